/*
 * wrap_connect.c - every way libpq opens, resets and closes a connection.
 *
 * Only a thread's outermost call is the program's: PQconnectdb calls
 * PQconnectStart and PQconnectPoll through libpq's PLT, and those nested
 * calls pass straight through.  PQcancel is deliberately not wrapped: psql
 * calls it from a signal handler, where nothing may lock or allocate; the
 * cancel objects it uses are followed instead (PQgetCancel, session.c).
 */
#include "lanes.h"
#include "pqerr.h"
#include "route.h"
#include "session.h"
#include "slots.h"
#include "startup.h"
#include "track.h"

/* Refuse a connect before it reaches the network (the rules, the
 * connection cap), route it (the policy may send it to the replica), or
 * let it through as asked; then record what it opened.  kw/val/expand
 * describe the call as PQconnectdbParams would take it. */
#define CONNECT(call, kw, val, expand, async) \
	do { \
		char why_buf[512]; \
		struct conn *c; \
		const char *why = track_connect_begin(&c, why_buf, sizeof why_buf); \
		if (why) \
			return pqerr_bad_conn(why); \
		struct connargs asked = { 0 }, routed = { 0 }; \
		int redirect = 0, target = TGT_DIRECT; \
		if (c && route_enabled() && connargs_from_params(&asked, kw, val, expand) == 0) \
			target = route_plan(&asked, &routed, &redirect); \
		lanes_choose(c, &asked, kw, val, expand); \
		PGconn *pg = OWN(redirect ? route_connect(&routed, async) : (call)); \
		track_connect_end(c, pg, &asked, redirect ? &routed : &asked, target, redirect); \
		connargs_free(&routed); \
		return pg; \
	} while (0)

/* The blocking and the non-blocking connects differ only in the function
 * called and in `async`: one definition each for the conninfo string and
 * the keyword arrays. */
#define WRAP_CONNINFO(name, async)                                                      \
	SHIM_EXPORT PGconn *name(const char *conninfo)                                   \
	{                                                                                \
		if (t.depth > 0)                                                         \
			return real.name(conninfo);                                      \
		const char *kw[] = { "dbname", NULL }, *val[] = { conninfo, NULL };      \
		CONNECT(real.name(conninfo), kw, val, 1, async);                         \
	}

#define WRAP_PARAMS(name, async)                                                        \
	SHIM_EXPORT PGconn *name(const char *const *keywords, const char *const *values, \
	                         int expand_dbname)                                      \
	{                                                                                \
		if (t.depth > 0)                                                         \
			return real.name(keywords, values, expand_dbname);               \
		CONNECT(real.name(keywords, values, expand_dbname), keywords, values,    \
		        expand_dbname, async);                                           \
	}

WRAP_CONNINFO(PQconnectdb, 0)
WRAP_PARAMS(PQconnectdbParams, 0)
WRAP_CONNINFO(PQconnectStart, 1)
WRAP_PARAMS(PQconnectStartParams, 1)

SHIM_EXPORT PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
                                 const char *pgtty, const char *dbName, const char *login,
                                 const char *pwd)
{
	if (t.depth > 0)
		return real.PQsetdbLogin(pghost, pgport, pgoptions, pgtty, dbName, login, pwd);
	/* dbName first: a conninfo there is expanded, the others override it */
	const char *kw[] = { "dbname", "host", "port", "options", "user", "password", NULL };
	const char *val[] = { dbName, pghost, pgport, pgoptions, login, pwd, NULL };
	CONNECT(real.PQsetdbLogin(pghost, pgport, pgoptions, pgtty, dbName, login, pwd), kw, val,
	        1, 0);
}

SHIM_EXPORT PostgresPollingStatusType PQconnectPoll(PGconn *conn)
{
	shim_ensure();
	if (t.depth > 0)
		return real.PQconnectPoll(conn);
	PostgresPollingStatusType r = OWN(real.PQconnectPoll(conn));
	track_connected(conn);
	return r;
}

/* A reset's step is done: the program's connection is what it is now. */
static int reset_stepped(PGconn *conn, int r)
{
	if (t.depth == 0)
		track_connected(conn);
	return r;
}

/* A reset reconnects where the policy says now, which may not be where
 * the connection was (switch.c); otherwise it is libpq's own. */
SHIM_EXPORT void PQreset(PGconn *conn)
{
	shim_ensure();
	if (t.depth == 0 && track_reset(conn, 0)) {
		track_connected(conn);
		return;
	}
	OWN(real.PQreset(conn));
	reset_stepped(conn, 0);
}

SHIM_EXPORT int PQresetStart(PGconn *conn)
{
	shim_ensure();
	if (t.depth == 0 && track_reset(conn, 1)) {
		track_connected(conn);
		return 1;
	}
	return reset_stepped(conn, OWN(real.PQresetStart(conn)));
}

SHIM_EXPORT PostgresPollingStatusType PQresetPoll(PGconn *conn)
{
	shim_ensure();
	return (PostgresPollingStatusType)reset_stepped(conn, OWN(real.PQresetPoll(conn)));
}

SHIM_EXPORT void PQfinish(PGconn *conn)
{
	shim_ensure();
	if (t.depth == 0)
		track_close(conn);
	OWN(real.PQfinish(conn));
	slots_closed();          /* a transaction's slot: once the server ended it */
}

/* A ping opens and closes a connection of its own: not the program's. */
SHIM_EXPORT PGPing PQping(const char *conninfo)
{
	shim_ensure();
	return OWN(real.PQping(conninfo));
}

SHIM_EXPORT PGPing PQpingParams(const char *const *keywords, const char *const *values,
                                int expand_dbname)
{
	shim_ensure();
	return OWN(real.PQpingParams(keywords, values, expand_dbname));
}

/* A cancel object of a connection that may move to another server is
 * followed, to point at the new backend after a move (session.c). */
SHIM_EXPORT PGcancel *PQgetCancel(PGconn *conn)
{
	if (t.depth)
		return real.PQgetCancel(conn);
	shim_enter();
	PGcancel *r = real.PQgetCancel(conn);
	if (r) {
		struct conn *c = conn_lookup(conn);
		if (c && c->routed)
			session_note_cancel(c, r);
	}
	return r;
}

SHIM_EXPORT void PQfreeCancel(PGcancel *cancel)
{
	shim_ensure();
	if (cancel && t.depth == 0)
		session_forget_cancel(cancel);
	real.PQfreeCancel(cancel);
}
