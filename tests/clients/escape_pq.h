/*
 * escape_pq.h - one connection, its backend's pid, closed: through whichever
 * libpq the caller hands in (escape_client.c through a copy's handle,
 * escape_plug.c through the libpq it was linked with).
 */
#include <libpq-fe.h>
#include <stdio.h>

struct pq {
	PGconn *(*connectdb)(const char *);
	ConnStatusType (*status)(const PGconn *);
	char *(*errormessage)(const PGconn *);
	PGresult *(*exec)(PGconn *, const char *);
	char *(*getvalue)(const PGresult *, int, int);
	void (*clear)(PGresult *);
	void (*finish)(PGconn *);
};

/* 0 and the pid in out, or -1 and why. */
static inline int pq_backend_pid(const struct pq *pq, const char *conninfo, char *out, int n)
{
	PGconn *c = pq->connectdb(conninfo);
	if (pq->status(c) != CONNECTION_OK) {
		snprintf(out, n, "%s", pq->errormessage(c));
		pq->finish(c);
		return -1;
	}
	PGresult *r = pq->exec(c, "select pg_backend_pid()");
	snprintf(out, n, "%s", pq->getvalue(r, 0, 0));
	pq->clear(r);
	pq->finish(c);
	return 0;
}
