/*
 * wrap_connect.c - every way libpq opens, resets and closes a connection.
 *
 * Only a thread's outermost call is the program's: PQconnectdb calls
 * PQconnectStart and PQconnectPoll through libpq's PLT, and those nested
 * calls pass straight through.  PQcancel is deliberately not wrapped: psql
 * calls it from a signal handler, where nothing may lock or allocate.
 */
#include "shim.h"
#include "pqerr.h"

/* Refuse a connect before it reaches the network (the rules, the
 * connection cap), or let it through and record what it opened. */
#define CONNECT(call) \
	do { \
		char why_buf[512]; \
		struct conn *c; \
		const char *why = track_connect_begin(&c, why_buf, sizeof why_buf); \
		if (why) \
			return pqerr_bad_conn(why); \
		t.depth++; \
		PGconn *pg = call; \
		t.depth--; \
		track_connect_end(c, pg); \
		return pg; \
	} while (0)

SHIM_EXPORT PGconn *PQconnectdb(const char *conninfo)
{
	if (t.depth > 0)
		return real.PQconnectdb(conninfo);
	CONNECT(real.PQconnectdb(conninfo));
}

SHIM_EXPORT PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
                                      int expand_dbname)
{
	if (t.depth > 0)
		return real.PQconnectdbParams(keywords, values, expand_dbname);
	CONNECT(real.PQconnectdbParams(keywords, values, expand_dbname));
}

SHIM_EXPORT PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
                                 const char *pgtty, const char *dbName, const char *login,
                                 const char *pwd)
{
	if (t.depth > 0)
		return real.PQsetdbLogin(pghost, pgport, pgoptions, pgtty, dbName, login, pwd);
	CONNECT(real.PQsetdbLogin(pghost, pgport, pgoptions, pgtty, dbName, login, pwd));
}

SHIM_EXPORT PGconn *PQconnectStart(const char *conninfo)
{
	if (t.depth > 0)
		return real.PQconnectStart(conninfo);
	CONNECT(real.PQconnectStart(conninfo));
}

SHIM_EXPORT PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values,
                                         int expand_dbname)
{
	if (t.depth > 0)
		return real.PQconnectStartParams(keywords, values, expand_dbname);
	CONNECT(real.PQconnectStartParams(keywords, values, expand_dbname));
}

SHIM_EXPORT PostgresPollingStatusType PQconnectPoll(PGconn *conn)
{
	shim_ensure();
	if (t.depth > 0)
		return real.PQconnectPoll(conn);
	t.depth++;
	PostgresPollingStatusType r = real.PQconnectPoll(conn);
	t.depth--;
	track_connected(conn);
	return r;
}

SHIM_EXPORT void PQreset(PGconn *conn)
{
	shim_ensure();
	t.depth++;
	real.PQreset(conn);
	t.depth--;
	if (t.depth == 0)
		track_connected(conn);
}

SHIM_EXPORT int PQresetStart(PGconn *conn)
{
	shim_ensure();
	t.depth++;
	int r = real.PQresetStart(conn);
	t.depth--;
	if (t.depth == 0)
		track_connected(conn);
	return r;
}

SHIM_EXPORT PostgresPollingStatusType PQresetPoll(PGconn *conn)
{
	shim_ensure();
	t.depth++;
	PostgresPollingStatusType r = real.PQresetPoll(conn);
	t.depth--;
	if (t.depth == 0)
		track_connected(conn);
	return r;
}

SHIM_EXPORT void PQfinish(PGconn *conn)
{
	shim_ensure();
	if (t.depth == 0)
		track_close(conn);
	t.depth++;
	real.PQfinish(conn);
	t.depth--;
}

/* A ping opens and closes a connection of its own: not the program's. */
SHIM_EXPORT PGPing PQping(const char *conninfo)
{
	shim_ensure();
	t.depth++;
	PGPing r = real.PQping(conninfo);
	t.depth--;
	return r;
}

SHIM_EXPORT PGPing PQpingParams(const char *const *keywords, const char *const *values,
                                int expand_dbname)
{
	shim_ensure();
	t.depth++;
	PGPing r = real.PQpingParams(keywords, values, expand_dbname);
	t.depth--;
	return r;
}
