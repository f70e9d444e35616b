/*
 * c_seg_hold.c - a cheap process that the shim tracks, for t_seg_size.sh.
 *
 *   c_seg_hold hold     connect (libpq's environment), record its own pid on
 *                       the server (insert into seg_seen), disconnect, print
 *                       "READY", then wait for EOF on stdin and exit 0: a
 *                       process record in the segment that holds no server
 *                       connection meanwhile.
 *   c_seg_hold conns N  open N connections one after another, each running
 *                       `select 1`, printing "conn I ok" or "conn I refused:
 *                       MESSAGE"; then "READY", wait for EOF, close all.
 *   c_seg_hold loop     connect, print "READY", then every 50 ms until EOF
 *                       on stdin run `insert into seg_bus values (I)`,
 *                       printing "I ok" or "I refused SQLSTATE: MESSAGE".
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

static void wait_eof(void)
{
	char buf[64];
	while (read(0, buf, sizeof buf) > 0)
		;
}

static void one_line(const char *s)
{
	for (; *s && *s != '\n'; s++)
		putchar(*s);
	putchar('\n');
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "hold")) {
		PGconn *c = PQconnectdb("");
		char sql[128];
		snprintf(sql, sizeof sql, "insert into seg_seen(pid) values (%d)", (int)getpid());
		PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
		if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
			printf("FAILED: ");
			one_line(PQerrorMessage(c));
			return 1;
		}
		PQclear(r);
		PQfinish(c);
		printf("READY\n");
		fflush(stdout);
		wait_eof();
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "conns")) {
		int n = atoi(argv[2]);
		PGconn **cs = calloc((size_t)n, sizeof *cs);
		for (int i = 0; i < n; i++) {
			cs[i] = PQconnectdb("");
			PGresult *r = PQstatus(cs[i]) == CONNECTION_OK ? PQexec(cs[i], "select 1") : NULL;
			if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
				printf("conn %d ok\n", i + 1);
			} else {
				printf("conn %d refused: ", i + 1);
				one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(cs[i]));
			}
			PQclear(r);
		}
		printf("READY\n");
		fflush(stdout);
		wait_eof();
		for (int i = 0; i < n; i++)
			PQfinish(cs[i]);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "loop")) {
		PGconn *c = PQconnectdb("");
		if (PQstatus(c) != CONNECTION_OK) {
			printf("FAILED: ");
			one_line(PQerrorMessage(c));
			return 1;
		}
		printf("READY\n");
		fflush(stdout);
		for (int i = 1;; i++) {
			struct pollfd in = { 0, POLLIN, 0 };
			if (poll(&in, 1, 50) > 0)
				break;               /* EOF (or anything): stop */
			char sql[64];
			snprintf(sql, sizeof sql, "insert into seg_bus values (%d)", i);
			PGresult *r = PQexec(c, sql);
			if (PQresultStatus(r) == PGRES_COMMAND_OK) {
				printf("%d ok\n", i);
			} else {
				const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
				printf("%d refused %s: ", i, st ? st : "-");
				one_line(PQresultErrorMessage(r));
			}
			fflush(stdout);
			PQclear(r);
		}
		PQfinish(c);
		return 0;
	}
	fprintf(stderr, "usage: c_seg_hold hold | conns N | loop\n");
	return 2;
}
