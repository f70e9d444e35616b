/*
 * suite_client.c - what client libraries' own test suites do to libpq, one
 * scenario per run (tests/integration/t_suite_*.sh run each with and without
 * the shim: the answers must be the same).
 *
 *   suite_client SCENARIO CONNINFO
 *
 *   terminated    a connection's backend is ended (pg_terminate_backend from
 *                 a second connection) while it is idle; then used: PQexec
 *                 fails, the status is CONNECTION_BAD, PQreset brings it
 *                 back; the same with PQsendQuery + PQgetResult
 *   cancel_thread PQcancel from another thread during a long PQexec: 57014,
 *                 and the connection works afterwards
 *   cancel_signal PQcancel from a SIGALRM handler during a long PQexec
 *   notify        LISTEN on one connection, NOTIFY (in a transaction and
 *                 out of one) on another of the same thread; the payloads
 *                 arrive through PQconsumeInput + PQnotifies
 *   copy_fail     COPY FROM STDIN ended with PQputCopyEnd(errormsg): 57014,
 *                 no row; COPY TO STDOUT that fails on the server mid-stream:
 *                 some rows, then 22012; the connection works after each
 *   lo            large objects: lo_creat/open/write/lseek/read/close in a
 *                 transaction, lo_import/lo_export, lo_unlink in autocommit
 *   restart       an idle and a busy connection (pg_sleep running); prints
 *                 "READY", waits for a line on stdin (the test restarts the
 *                 server meanwhile); both fail as libpq says, PQreset
 *                 brings both back
 *
 * With SUITE_HOLD set, each scenario prints "HOLD" before it closes its
 * connections and waits for a line on stdin: the test looks at the shim's
 * view (every connection idle, no slot held) while they are still open.
 * Prints "OK SCENARIO" and exits 0, or "FAIL: why" and exits 1.  Every wait
 * is bounded.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *conninfo;

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL: " __VA_ARGS__); printf("\n"); exit(1); } } while (0)

static PGconn *connect_ok(void)
{
	PGconn *c = PQconnectdb(conninfo);
	CHECK(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
	return c;
}

/* One value of a statement that must work. */
static char *value(PGconn *c, const char *sql)
{
	static char buf[256];
	PGresult *r = PQexec(c, sql);
	CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
	      PQerrorMessage(c));
	snprintf(buf, sizeof buf, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return buf;
}

static void command(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	CHECK(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
	      "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

static const char *sqlstate(const PGresult *r)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

static void hold(void)
{
	if (!getenv("SUITE_HOLD"))
		return;
	printf("HOLD\n");
	fflush(stdout);
	char line[64];
	CHECK(fgets(line, sizeof line, stdin) != NULL, "no line on stdin after HOLD");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- terminated ---------------------------------------------------------- */

static void end_backend(PGconn *killer, int pid)
{
	char sql[128];
	snprintf(sql, sizeof sql, "select pg_terminate_backend(%d)", pid);
	CHECK(strcmp(value(killer, sql), "t") == 0, "pg_terminate_backend(%d)", pid);
	snprintf(sql, sizeof sql, "select count(*) from pg_stat_activity where pid = %d", pid);
	for (int i = 0; i < 100 && strcmp(value(killer, sql), "0") != 0; i++)
		sleep_ms(50);
	CHECK(strcmp(value(killer, sql), "0") == 0, "backend %d still there", pid);
}

static void reset_and_use(PGconn *c, const char *what)
{
	PQreset(c);
	CHECK(PQstatus(c) == CONNECTION_OK, "%s: PQreset: %s", what, PQerrorMessage(c));
	CHECK(strcmp(value(c, "select 1"), "1") == 0, "%s: after PQreset", what);
}

static void terminated(void)
{
	PGconn *killer = connect_ok();
	/* sync */
	PGconn *c = connect_ok();
	value(c, "select 1");
	end_backend(killer, PQbackendPID(c));
	PGresult *r = PQexec(c, "select 1");
	CHECK(PQresultStatus(r) != PGRES_TUPLES_OK, "sync: a statement worked on an ended backend");
	PQclear(r);
	CHECK(PQstatus(c) == CONNECTION_BAD, "sync: status %d after the failure", PQstatus(c));
	reset_and_use(c, "sync");
	/* async */
	PGconn *a = connect_ok();
	value(a, "select 1");
	end_backend(killer, PQbackendPID(a));
	int failed = 0;
	if (!PQsendQuery(a, "select 1")) {
		failed = 1;
	} else {
		while ((r = PQgetResult(a)) != NULL) {
			if (PQresultStatus(r) != PGRES_TUPLES_OK)
				failed = 1;
			PQclear(r);
		}
	}
	CHECK(failed, "async: a statement worked on an ended backend");
	CHECK(PQstatus(a) == CONNECTION_BAD, "async: status %d after the failure", PQstatus(a));
	reset_and_use(a, "async");
	/* inside a transaction */
	PGconn *x = connect_ok();
	command(x, "begin");
	value(x, "select 1");
	end_backend(killer, PQbackendPID(x));
	r = PQexec(x, "select 1");
	CHECK(PQresultStatus(r) != PGRES_TUPLES_OK, "in a transaction: a statement worked on an ended backend");
	PQclear(r);
	CHECK(PQstatus(x) == CONNECTION_BAD, "in a transaction: status %d", PQstatus(x));
	reset_and_use(x, "in a transaction");
	CHECK(PQtransactionStatus(x) == PQTRANS_IDLE, "in a transaction: after PQreset, %d",
	      PQtransactionStatus(x));
	hold();
	PQfinish(x);
	PQfinish(a);
	PQfinish(c);
	PQfinish(killer);
}

/* ---- cancel ---------------------------------------------------------------- */

static PGcancel *volatile cancel_obj;
static volatile sig_atomic_t cancel_sent;

static void *canceller(void *arg)
{
	(void)arg;
	char err[256];
	sleep_ms(500);
	cancel_sent = PQcancel(cancel_obj, err, sizeof err) ? 1 : -1;
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
	char err[256];
	cancel_sent = PQcancel(cancel_obj, err, sizeof err) ? 1 : -1;
}

static void long_query_cancelled(PGconn *c, const char *what)
{
	double t0 = now_s();
	PGresult *r = PQexec(c, "select pg_sleep(30)");
	double took = now_s() - t0;
	for (int i = 0; i < 100 && !cancel_sent; i++)
		sleep_ms(50);      /* the query ended first: say how */
	CHECK(cancel_sent == 1, "%s: PQcancel %s; the query: status %d sqlstate '%s' after %.1f s: %s",
	      what, cancel_sent ? "failed" : "never sent", PQresultStatus(r), sqlstate(r), took,
	      PQresultErrorMessage(r));
	CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR && strcmp(sqlstate(r), "57014") == 0,
	      "%s: expected 57014, got status %d sqlstate '%s'", what, PQresultStatus(r), sqlstate(r));
	CHECK(took < 20, "%s: the query ran %.1f s", what, took);
	PQclear(r);
	CHECK(strcmp(value(c, "select 2"), "2") == 0, "%s: the connection afterwards", what);
}

static void cancel_thread(void)
{
	PGconn *c = connect_ok();
	cancel_obj = PQgetCancel(c);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, canceller, NULL) == 0, "pthread_create");
	long_query_cancelled(c, "thread");
	pthread_join(th, NULL);
	hold();
	PQfreeCancel(cancel_obj);
	PQfinish(c);
}

static void cancel_signal(void)
{
	PGconn *c = connect_ok();
	cancel_obj = PQgetCancel(c);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 0 }, { 0, 500000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	long_query_cancelled(c, "signal");
	hold();
	PQfreeCancel(cancel_obj);
	PQfinish(c);
}

/* ---- LISTEN / NOTIFY ------------------------------------------------------- */

static PGnotify *wait_notify(PGconn *c, double seconds)
{
	double end = now_s() + seconds;
	for (;;) {
		CHECK(PQconsumeInput(c), "PQconsumeInput: %s", PQerrorMessage(c));
		PGnotify *n = PQnotifies(c);
		if (n)
			return n;
		double left = end - now_s();
		if (left <= 0)
			return NULL;
		struct pollfd p = { PQsocket(c), POLLIN, 0 };
		poll(&p, 1, (int)(left * 1000) + 1);
	}
}

static void notify(void)
{
	PGconn *l = connect_ok(), *n = connect_ok();
	command(l, "listen suite_ch");
	command(n, "notify suite_ch, 'one'");
	PGnotify *got = wait_notify(l, 5);
	CHECK(got && strcmp(got->relname, "suite_ch") == 0 && strcmp(got->extra, "one") == 0,
	      "the first notification: %s", got ? got->extra : "none");
	CHECK(got->be_pid == PQbackendPID(n), "be_pid %d, the notifier is %d", got->be_pid,
	      PQbackendPID(n));
	PQfreemem(got);
	/* in a transaction: delivered at commit, not before */
	command(n, "begin");
	command(n, "select pg_notify('suite_ch', 'two')");
	got = wait_notify(l, 0.5);
	CHECK(!got, "a notification before its transaction committed");
	command(n, "commit");
	got = wait_notify(l, 5);
	CHECK(got && strcmp(got->extra, "two") == 0, "the second notification: %s",
	      got ? got->extra : "none");
	PQfreemem(got);
	command(l, "unlisten *");
	hold();
	PQfinish(n);
	PQfinish(l);
}

/* ---- COPY that fails -------------------------------------------------------- */

static void copy_fail(void)
{
	PGconn *c = connect_ok();
	command(c, "drop table if exists suite_copy; create table suite_copy (n int)");
	/* FROM STDIN, ended by the client */
	PGresult *r = PQexec(c, "copy suite_copy from stdin");
	CHECK(PQresultStatus(r) == PGRES_COPY_IN, "copy from: %s", PQerrorMessage(c));
	PQclear(r);
	for (int i = 0; i < 100; i++) {
		char row[16];
		int n = snprintf(row, sizeof row, "%d\n", i);
		CHECK(PQputCopyData(c, row, n) == 1, "PQputCopyData: %s", PQerrorMessage(c));
	}
	CHECK(PQputCopyEnd(c, "the client gave up") == 1, "PQputCopyEnd: %s", PQerrorMessage(c));
	r = PQgetResult(c);
	CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR && strcmp(sqlstate(r), "57014") == 0,
	      "copy from, ended: status %d sqlstate '%s'", PQresultStatus(r), sqlstate(r));
	CHECK(strstr(PQresultErrorMessage(r), "the client gave up") != NULL, "copy from: message %s",
	      PQresultErrorMessage(r));
	PQclear(r);
	CHECK(PQgetResult(c) == NULL, "copy from: more results");
	CHECK(strcmp(value(c, "select count(*) from suite_copy"), "0") == 0, "rows after the failure");
	/* TO STDOUT, failing on the server after some rows */
	r = PQexec(c, "copy (select case when g < 500 then g else 1 / (g - g) end "
	              "from generate_series(1, 100000) g) to stdout");
	CHECK(PQresultStatus(r) == PGRES_COPY_OUT, "copy to: %s", PQerrorMessage(c));
	PQclear(r);
	int rows = 0, n;
	char *buf;
	while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
		rows++;
		PQfreemem(buf);
	}
	CHECK(n == -1, "copy to: PQgetCopyData %d: %s", n, PQerrorMessage(c));
	r = PQgetResult(c);
	CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR && strcmp(sqlstate(r), "22012") == 0,
	      "copy to: status %d sqlstate '%s'", PQresultStatus(r), sqlstate(r));
	PQclear(r);
	CHECK(PQgetResult(c) == NULL, "copy to: more results");
	CHECK(rows == 499, "copy to: %d rows before the failure", rows);
	CHECK(strcmp(value(c, "select 3"), "3") == 0, "the connection after the COPYs");
	command(c, "drop table suite_copy");
	hold();
	PQfinish(c);
}

/* ---- large objects ------------------------------------------------------------ */

#include <libpq/libpq-fs.h>

static void lo(void)
{
	PGconn *c = connect_ok();
	const char data[] = "large object data, through PQfn";
	command(c, "begin");
	Oid oid = lo_creat(c, INV_READ | INV_WRITE);
	CHECK(oid != InvalidOid, "lo_creat: %s", PQerrorMessage(c));
	int fd = lo_open(c, oid, INV_READ | INV_WRITE);
	CHECK(fd >= 0, "lo_open: %s", PQerrorMessage(c));
	CHECK(lo_write(c, fd, data, sizeof data) == (int)sizeof data, "lo_write: %s", PQerrorMessage(c));
	CHECK(lo_lseek(c, fd, 0, SEEK_SET) == 0, "lo_lseek: %s", PQerrorMessage(c));
	char back[64] = "";
	CHECK(lo_read(c, fd, back, sizeof back) == (int)sizeof data, "lo_read: %s", PQerrorMessage(c));
	CHECK(memcmp(back, data, sizeof data) == 0, "lo_read: %s", back);
	CHECK(lo_close(c, fd) == 0, "lo_close: %s", PQerrorMessage(c));
	command(c, "commit");
	char sql[128];
	snprintf(sql, sizeof sql, "select count(*) from pg_largeobject_metadata where oid = %u", oid);
	CHECK(strcmp(value(c, sql), "1") == 0, "the object on the server");
	/* import / export, autocommit */
	char in[] = "/tmp/suite_lo_in.XXXXXX", out[64];
	int tfd = mkstemp(in);
	CHECK(tfd >= 0 && write(tfd, data, sizeof data) == (ssize_t)sizeof data, "temp file");
	close(tfd);
	command(c, "begin");
	Oid imp = lo_import(c, in);
	CHECK(imp != InvalidOid, "lo_import: %s", PQerrorMessage(c));
	snprintf(out, sizeof out, "%s.out", in);
	CHECK(lo_export(c, imp, out) == 1, "lo_export: %s", PQerrorMessage(c));
	command(c, "commit");
	FILE *f = fopen(out, "r");
	memset(back, 0, sizeof back);
	CHECK(f && fread(back, 1, sizeof back, f) == sizeof data && memcmp(back, data, sizeof data) == 0,
	      "lo_export's file");
	fclose(f);
	unlink(in);
	unlink(out);
	CHECK(lo_unlink(c, oid) == 1 && lo_unlink(c, imp) == 1, "lo_unlink: %s", PQerrorMessage(c));
	snprintf(sql, sizeof sql, "select count(*) from pg_largeobject_metadata where oid in (%u, %u)",
	         oid, imp);
	CHECK(strcmp(value(c, sql), "0") == 0, "objects left after lo_unlink");
	hold();
	PQfinish(c);
}

/* ---- restart ------------------------------------------------------------------- */

static void restart(void)
{
	PGconn *idle = connect_ok(), *busy = connect_ok();
	value(idle, "select 1");
	CHECK(PQsendQuery(busy, "select pg_sleep(60)"), "send: %s", PQerrorMessage(busy));
	printf("READY\n");
	fflush(stdout);
	char line[64];
	CHECK(fgets(line, sizeof line, stdin) != NULL, "no go-ahead on stdin");
	/* busy: its results end with an error (the server went away) */
	double t0 = now_s();
	int failed = 0;
	PGresult *r;
	while ((r = PQgetResult(busy)) != NULL) {
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			failed = 1;
		PQclear(r);
		CHECK(now_s() - t0 < 20, "busy: results never ended");
	}
	CHECK(failed, "busy: pg_sleep(60) came back fine across a restart");
	CHECK(PQstatus(busy) == CONNECTION_BAD, "busy: status %d", PQstatus(busy));
	/* idle: the next statement fails */
	r = PQexec(idle, "select 1");
	CHECK(PQresultStatus(r) != PGRES_TUPLES_OK, "idle: a statement worked across a restart");
	PQclear(r);
	CHECK(PQstatus(idle) == CONNECTION_BAD, "idle: status %d", PQstatus(idle));
	reset_and_use(idle, "idle");
	reset_and_use(busy, "busy");
	hold();
	PQfinish(busy);
	PQfinish(idle);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: suite_client SCENARIO CONNINFO\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	conninfo = argv[2];
	const char *s = argv[1];
	if (!strcmp(s, "terminated"))
		terminated();
	else if (!strcmp(s, "cancel_thread"))
		cancel_thread();
	else if (!strcmp(s, "cancel_signal"))
		cancel_signal();
	else if (!strcmp(s, "notify"))
		notify();
	else if (!strcmp(s, "copy_fail"))
		copy_fail();
	else if (!strcmp(s, "lo"))
		lo();
	else if (!strcmp(s, "restart"))
		restart();
	else {
		fprintf(stderr, "suite_client: no scenario %s\n", s);
		return 2;
	}
	printf("OK %s\n", s);
	return 0;
}
