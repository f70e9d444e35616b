/*
 * c_client.c - a C program that uses every libpq connect path and every way
 * of sending work, with exact statement counts, for t_c_client.sh.
 *
 * Connections (application_name c_client), each printed as
 * "conn NAME backend PID queries Q xacts X" so the test can compare with
 * what the shim and the server report:
 *   setdb     PQsetdbLogin; PQexec x2; BEGIN/INSERT/COMMIT; old COPY
 *             (PQexec COPY FROM STDIN + PQputline + PQendcopy)
 *   async     PQconnectStart + PQconnectPoll; PQsendQuery + PQgetResult;
 *             PQsendPrepare, PQsendQueryPrepared, PQsendDescribePrepared;
 *             then PQresetStart + PQresetPoll and one more PQexec
 *   params    PQconnectdbParams; PQexecParams; PQprepare; PQexecPrepared;
 *             PQdescribePrepared; a pipeline of 3 PQsendQueryParams +
 *             PQpipelineSync; COPY TO STDOUT with PQgetCopyData; lo_creat
 *             + lo_unlink (PQfn inside libpq); then PQreset and PQexec
 *   plain     PQconnectdb; PQping (not a connection of the program's)
 * Then "READY", wait for EOF on stdin, PQfinish all (unless
 * C_CLIENT_NO_FINISH is set: then exit with the connections open), exit 0.
 * It also reports how dlsym answers: RTLD_NEXT from the program must still
 * mean "after the program" (the shim's dlsym must not change who asks),
 * and a look-up on libpq's own handle (what ctypes does) must give the
 * function the program would call (the shim's, when preloaded).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libpq-fe.h>
#include <libpq/libpq-fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

static void die(PGconn *c, const char *what)
{
	fprintf(stderr, "c_client: %s: %s", what, c ? PQerrorMessage(c) : "no connection\n");
	exit(1);
}

static void ok(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
	if (!r || PQresultStatus(r) != want) {
		fprintf(stderr, "c_client: %s: %s %s", what, r ? PQresStatus(PQresultStatus(r)) : "NULL",
		        c ? PQerrorMessage(c) : "");
		exit(1);
	}
	PQclear(r);
}

/* Drain results up to NULL; each must have status want. */
static void drain(PGconn *c, ExecStatusType want, const char *what)
{
	PGresult *r;
	while ((r = PQgetResult(c)))
		ok(c, r, want, what);
}

static void poll_until_done(PGconn *c, PostgresPollingStatusType (*poll)(PGconn *), const char *what)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			die(c, what);
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(PQsocket(c), &fds);
		select(PQsocket(c) + 1, st == PGRES_POLLING_READING ? &fds : NULL,
		       st == PGRES_POLLING_WRITING ? &fds : NULL, NULL, NULL);
		st = poll(c);
	}
}

int main(void)
{
	const char *app = "c_client";
	setenv("PGAPPNAME", app, 1);

	/* setdb: 2 + 3 + 1 (COPY) = 6 statements, 6 transactions */
	PGconn *setdb = PQsetdbLogin(NULL, NULL, NULL, NULL, getenv("PGDATABASE"), NULL, NULL);
	if (PQstatus(setdb) != CONNECTION_OK)
		die(setdb, "PQsetdbLogin");
	ok(setdb, PQexec(setdb, "drop table if exists c_client_t"), PGRES_COMMAND_OK, "drop");
	ok(setdb, PQexec(setdb, "create table c_client_t (a int, b text)"), PGRES_COMMAND_OK, "create");
	ok(setdb, PQexec(setdb, "begin"), PGRES_COMMAND_OK, "begin");
	ok(setdb, PQexec(setdb, "insert into c_client_t values (0, 'zero')"), PGRES_COMMAND_OK, "insert");
	ok(setdb, PQexec(setdb, "commit"), PGRES_COMMAND_OK, "commit");
	ok(setdb, PQexec(setdb, "copy c_client_t from stdin"), PGRES_COPY_IN, "copy in");
	PQputline(setdb, "1\tone\n");
	PQputline(setdb, "2\ttwo\n");
	PQputline(setdb, "\\.\n");
	if (PQendcopy(setdb) != 0)
		die(setdb, "PQendcopy");
	printf("conn setdb backend %d queries 6 xacts 4\n", PQbackendPID(setdb));

	/* async: 4 statements before the reset, 1 after */
	PGconn *async = PQconnectStart("");
	if (!async || PQstatus(async) == CONNECTION_BAD)
		die(async, "PQconnectStart");
	poll_until_done(async, PQconnectPoll, "PQconnectPoll");
	if (!PQsendQuery(async, "select count(*) from c_client_t"))
		die(async, "PQsendQuery");
	drain(async, PGRES_TUPLES_OK, "sendQuery");
	if (!PQsendPrepare(async, "s1", "select $1::int + 1", 1, NULL))
		die(async, "PQsendPrepare");
	drain(async, PGRES_COMMAND_OK, "sendPrepare");
	const char *one[] = { "41" };
	if (!PQsendQueryPrepared(async, "s1", 1, one, NULL, NULL, 0))
		die(async, "PQsendQueryPrepared");
	drain(async, PGRES_TUPLES_OK, "sendQueryPrepared");
	if (!PQsendDescribePrepared(async, "s1"))
		die(async, "PQsendDescribePrepared");
	drain(async, PGRES_COMMAND_OK, "sendDescribePrepared");
	if (!PQresetStart(async))
		die(async, "PQresetStart");
	poll_until_done(async, PQresetPoll, "PQresetPoll");
	ok(async, PQexec(async, "select 1"), PGRES_TUPLES_OK, "after reset");
	printf("conn async backend %d queries 5 xacts 5\n", PQbackendPID(async));

	/* params: 4 + 3 (pipeline) + 1 (COPY TO) + lo_creat/lo_unlink inside a
	 * transaction (BEGIN, 2 x PQfn, COMMIT = 4; libpq's own look-up of the
	 * large-object functions adds 1 PQexec the first time) + 1 after reset
	 * = 14 statements; transactions: 4 + 1 (the pipeline up to its sync is
	 * one implicit transaction) + 1 + 1 + 1 = 8 */
	const char *kw[] = { "dbname", "application_name", NULL };
	const char *val[] = { getenv("PGDATABASE"), app, NULL };
	PGconn *params = PQconnectdbParams(kw, val, 0);
	if (PQstatus(params) != CONNECTION_OK)
		die(params, "PQconnectdbParams");
	const char *p1[] = { "3" };
	ok(params, PQexecParams(params, "select $1::int * 2", 1, NULL, p1, NULL, NULL, 0),
	   PGRES_TUPLES_OK, "execParams");
	ok(params, PQprepare(params, "s2", "select a from c_client_t where a = $1", 1, NULL),
	   PGRES_COMMAND_OK, "prepare");
	ok(params, PQexecPrepared(params, "s2", 1, p1, NULL, NULL, 0), PGRES_TUPLES_OK, "execPrepared");
	ok(params, PQdescribePrepared(params, "s2"), PGRES_COMMAND_OK, "describePrepared");
	if (!PQenterPipelineMode(params))
		die(params, "PQenterPipelineMode");
	for (int i = 0; i < 3; i++)
		if (!PQsendQueryParams(params, "select $1::int", 1, NULL, p1, NULL, NULL, 0))
			die(params, "pipeline send");
	if (!PQpipelineSync(params))
		die(params, "PQpipelineSync");
	for (int i = 0; i < 3; i++)
		drain(params, PGRES_TUPLES_OK, "pipeline result");
	PGresult *sync = PQgetResult(params);
	ok(params, sync, PGRES_PIPELINE_SYNC, "pipeline sync");
	if (!PQexitPipelineMode(params))
		die(params, "PQexitPipelineMode");
	ok(params, PQexec(params, "copy c_client_t to stdout"), PGRES_COPY_OUT, "copy out");
	char *buf;
	int rows = 0, n;
	while ((n = PQgetCopyData(params, &buf, 0)) > 0) {
		rows++;
		PQfreemem(buf);
	}
	drain(params, PGRES_COMMAND_OK, "copy out end");
	if (rows != 3)
		die(params, "copy out rows");
	ok(params, PQexec(params, "begin"), PGRES_COMMAND_OK, "lo begin");
	Oid lo = lo_creat(params, INV_READ | INV_WRITE);
	if (lo == InvalidOid || lo_unlink(params, lo) != 1)
		die(params, "lo_creat/lo_unlink");
	ok(params, PQexec(params, "commit"), PGRES_COMMAND_OK, "lo commit");
	PQreset(params);
	if (PQstatus(params) != CONNECTION_OK)
		die(params, "PQreset");
	ok(params, PQexec(params, "select 2"), PGRES_TUPLES_OK, "after PQreset");
	printf("conn params backend %d queries 14 xacts 8\n", PQbackendPID(params));

	PGconn *plain = PQconnectdb("");
	if (PQstatus(plain) != CONNECTION_OK)
		die(plain, "PQconnectdb");
	if (PQping("") != PQPING_OK)
		die(NULL, "PQping");
	printf("conn plain backend %d queries 0 xacts 0\n", PQbackendPID(plain));

	/* How dlsym answers, with and without the shim. */
	void *next = dlsym(RTLD_NEXT, "PQexec"), *dflt = dlsym(RTLD_DEFAULT, "PQexec");
	void *libpq = dlopen("libpq.so.5", RTLD_LAZY | RTLD_NOLOAD);
	void *onlib = libpq ? dlsym(libpq, "PQexec") : NULL;
	printf("dlsym next_is_default %d handle_is_default %d other_untouched %d\n",
	       next == dflt, onlib == dflt,
	       dlsym(libpq, "PQlibVersion") == (void *)PQlibVersion || dlsym(libpq, "PQlibVersion") != NULL);

	printf("READY\n");
	fflush(stdout);
	int ch;
	while ((ch = getchar()) != EOF)
		;
	if (getenv("C_CLIENT_NO_FINISH"))
		exit(0);        /* some programs exit without PQfinish */
	PQfinish(setdb);
	PQfinish(async);
	PQfinish(params);
	PQfinish(plain);
	return 0;
}
