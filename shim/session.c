/*
 * session.c - what moves with a connection besides its socket (switch.c
 * moves it, see session.h): the session settings the program changed, the statements it
 * prepared by name, and the cancel objects it took.
 *
 * Settings: those the server reports (client_encoding, DateStyle, ...) as
 * libpq last saw them, and every setting the session changed with SET or
 * set_config (pg_settings, source 'session': search_path, work_mem, ...;
 * and SET ROLE, SET SESSION AUTHORIZATION), asked of the old session just
 * before the move.  Not custom settings (app.tenant): no view lists them.
 * The channels it LISTENs on are listened to again (a replica refuses:
 * then the connection is reset rather than moved deaf).
 * Prepared statements: noted as PQprepare/PQsendPrepare succeed, prepared
 * again on the new server.  Cancel objects: rewritten to reach the new
 * backend.
 */
#include "session.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAMEDATALEN_SQL 160      /* "LISTEN " and a quoted 63-byte name, doubled quotes */

/* A statement prepared by name, to prepare again after a migration. */
struct prepared {
	struct prepared *next;
	char *name, *query;
	int nparams;
	Oid *types;
};

void session_note_prepare(struct conn *c, const char *name, const char *query,
                         int nparams, const Oid *types)
{
	if (!name || !*name || !query || !c->routed)
		return;              /* unnamed statements last one use */
	struct prepared *p;
	for (p = c->prepared; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			break;
	if (!p) {
		p = calloc(1, sizeof *p);
		if (!p)
			return;
		p->name = strdup(name);
		p->next = c->prepared;
		c->prepared = p;
	} else {
		free(p->query);
		free(p->types);
		p->types = NULL;
	}
	p->query = strdup(query);
	p->nparams = nparams;
	if (nparams > 0 && types) {
		p->types = malloc((size_t)nparams * sizeof *types);
		if (p->types)
			memcpy(p->types, types, (size_t)nparams * sizeof *types);
	}
}

/*
 * The program's cancel objects (PQgetCancel) of connections that may move:
 * a PGcancel holds the server's address and the backend's pid and key, so
 * after a move it must be made to point at the new backend, or the
 * program's cancel (psycopg2's connection.cancel(), psql's Ctrl-C for the
 * statement that moved) would reach the old one.  A fixed table under
 * g.lock (never taken where psql's signal handler runs: it calls only
 * PQcancel): an object hashes to a window of CANCEL_PROBE entries, so
 * PQfreeCancel looks at eight; one that finds its window full is not
 * followed (logged once).
 */
#define CANCELS        256
#define CANCEL_PROBE   8
static struct { PGcancel *cancel; struct conn *c; } cancels[CANCELS];

static unsigned cancel_home(const PGcancel *cancel)
{
	uint64_t h = (uint64_t)(uintptr_t)cancel * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 56) % CANCELS;
}

void session_note_cancel(struct conn *c, PGcancel *cancel)
{
	unsigned home = cancel_home(cancel);
	pthread_mutex_lock(&g.lock);
	for (unsigned i = 0; i < CANCEL_PROBE; i++) {
		unsigned k = (home + i) % CANCELS;
		if (!cancels[k].cancel) {
			cancels[k].cancel = cancel;
			cancels[k].c = c;
			__atomic_fetch_add(&c->cancels, 1, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&g.lock);
			return;
		}
	}
	pthread_mutex_unlock(&g.lock);
	static int warned;
	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		shim_log(LOG_WARNING, "too many cancel objects to follow: one of them will "
		         "still point at the old server if its connection moves");
}

static void cancel_drop_locked(unsigned k)
{
	if (cancels[k].c)
		__atomic_fetch_sub(&cancels[k].c->cancels, 1, __ATOMIC_RELAXED);
	cancels[k].c = NULL;
	cancels[k].cancel = NULL;
}

/* The program frees a cancel object (perhaps on another thread than the
 * one moving its connection: the lock keeps a move from writing into it
 * once it is gone). */
void session_forget_cancel(PGcancel *cancel)
{
	unsigned home = cancel_home(cancel);
	pthread_mutex_lock(&g.lock);
	for (unsigned i = 0; i < CANCEL_PROBE; i++) {
		unsigned k = (home + i) % CANCELS;
		if (cancels[k].cancel == cancel) {
			cancel_drop_locked(k);
			break;
		}
	}
	pthread_mutex_unlock(&g.lock);
}

/* c now talks to another backend: so do its cancel objects. */
void session_follow_cancels(struct conn *c)
{
	if (!__atomic_load_n(&c->cancels, __ATOMIC_RELAXED))
		return;
	PGcancel *fresh = OWN(real.PQgetCancel(c->pg));
	if (!fresh)
		return;
	pthread_mutex_lock(&g.lock);
	for (unsigned k = 0; k < CANCELS; k++)
		if (cancels[k].cancel && cancels[k].c == c)
			pqint_cancel_copy(cancels[k].cancel, fresh);
	pthread_mutex_unlock(&g.lock);
	real.PQfreeCancel(fresh);
}

void session_forget(struct conn *c)
{
	/* the program's cancel objects outlive the connection: stop following them */
	if (__atomic_load_n(&c->cancels, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&g.lock);
		for (unsigned k = 0; k < CANCELS; k++)
			if (cancels[k].c == c)
				cancel_drop_locked(k);
		pthread_mutex_unlock(&g.lock);
	}
	struct prepared *p = c->prepared;
	while (p) {
		struct prepared *next = p->next;
		free(p->name);
		free(p->query);
		free(p->types);
		free(p);
		p = next;
	}
	c->prepared = NULL;
	connargs_free(&c->args);
	connargs_free(&c->where);
}

/* What the old session changed with SET or set_config, in an order that
 * works: who the session is first (SET SESSION AUTHORIZATION), the
 * settings, then SET ROLE (the settings were made before it as often as
 * after, and the login role may set more).  pg_settings does not list
 * those two: current_setting does.  default_transaction_read_only belongs
 * to the policy: the replica's sessions get it when they connect.  $1: the
 * user the connection logged in as. */
static const char session_sets_sql[] =
	"select 0, 'session_authorization', current_setting('session_authorization')"
	" where current_setting('session_authorization') <> $1"
	" union all select 1, name, setting from pg_catalog.pg_settings"
	" where source = 'session' and name <> 'default_transaction_read_only'"
	" union all select 2, 'role', current_setting('role') where current_setting('role') <> 'none'"
	" union all select 3, 'LISTEN', c from pg_catalog.pg_listening_channels() c"
	" order by 1, 2, 3";

/* Give `to` what `from` changed; the channels it listens on too.  -1 and
 * err when the new side refuses one of those (a replica cannot LISTEN):
 * a connection that silently stopped hearing its channels would be worse
 * than one reset. */
static int carry_sets(PGconn *from, PGconn *to, char *err, size_t size)
{
	if (real.PQstatus(from) != CONNECTION_OK)
		return 0;            /* its backend is gone (drain.c): nothing to ask */
	const char *user = real.PQuser(from);
	PGresult *sets = real.PQexecParams(from, session_sets_sql, 1, NULL, &user, NULL, NULL, 0);
	if (real.PQresultStatus(sets) != PGRES_TUPLES_OK) {
		shim_log(LOG_WARNING, "could not read the session's settings: %s",
		         real.PQresultErrorMessage(sets));
		real.PQclear(sets);
		return 0;
	}
	int rc = 0;
	for (int i = 0; i < real.PQntuples(sets) && rc == 0; i++) {
		const char *vals[2] = { real.PQgetvalue(sets, i, 1), real.PQgetvalue(sets, i, 2) };
		PGresult *r;
		if (real.PQgetvalue(sets, i, 0)[0] == '3') {
			char *id = real.PQescapeIdentifier(to, vals[1], strlen(vals[1]));
			char sql[NAMEDATALEN_SQL];
			snprintf(sql, sizeof sql, "LISTEN %s", id ? id : "\"\"");
			real.PQfreemem(id);
			r = real.PQexec(to, sql);
			if (real.PQresultStatus(r) != PGRES_COMMAND_OK) {
				const char *why = real.PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
				snprintf(err, size, "it listens on channel \"%s\", and the new server refuses "
				         "to: %s", vals[1], why ? why : "no reason given");
				rc = -1;
			}
		} else {
			r = real.PQexecParams(to, "select pg_catalog.set_config($1, $2, false)", 2, NULL,
			                      vals, NULL, NULL, 0);
			if (real.PQresultStatus(r) != PGRES_TUPLES_OK)
				shim_log(LOG_WARNING, "could not carry %s over to the new session: %s",
				         vals[0], real.PQresultErrorMessage(r));
		}
		real.PQclear(r);
	}
	real.PQclear(sets);
	return rc;
}

/* Settings a driver changes after connecting (psycopg2 sets DateStyle),
 * which a fresh session must get again. */
static const char *carried_settings[] = {
	"client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
	"standard_conforming_strings", "application_name", NULL
};

static int carry_session_inner(struct conn *c, PGconn *from, PGconn *to, char *err, size_t size)
{
	for (const char **s = carried_settings; *s; s++) {
		const char *want = real.PQparameterStatus(from, *s);
		const char *have = real.PQparameterStatus(to, *s);
		if (!want || (have && strcmp(want, have) == 0))
			continue;
		char *lit = real.PQescapeLiteral(to, want, strlen(want));
		if (!lit)
			continue;
		char sql[512];
		snprintf(sql, sizeof sql, "SET %s = %s", *s, lit);
		real.PQfreemem(lit);
		PGresult *r = real.PQexec(to, sql);
		int ok = real.PQresultStatus(r) == PGRES_COMMAND_OK;
		real.PQclear(r);
		if (!ok)
			shim_log(LOG_WARNING, "could not carry %s over to the new session", *s);
	}
	for (struct prepared *p = c->prepared; p; p = p->next) {
		PGresult *r = real.PQprepare(to, p->name, p->query, p->nparams, p->types);
		if (real.PQresultStatus(r) != PGRES_COMMAND_OK) {
			const char *why = real.PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			snprintf(err, size, "statement \"%s\" could not be prepared again: %s", p->name,
			         why ? why : "no reason given");
			real.PQclear(r);
			return -1;
		}
		real.PQclear(r);
	}
	return 0;
}

static int carry(struct conn *c, PGconn *from, PGconn *to, int sets, char *err, size_t size)
{
	int r = carry_session_inner(c, from, to, err, size);
	/* ended by the drain (its socket shut down, libpq not told yet):
	 * nothing to ask, its SETs are gone (README "Status") */
	if (r == 0 && sets && __atomic_load_n(&c->rec->status, __ATOMIC_RELAXED) != CST_BAD)
		r = carry_sets(from, to, err, size);
	return r;
}

int session_carry(struct conn *c, PGconn *from, PGconn *to, int sets, char *err, size_t size)
{
	return OWN(carry(c, from, to, sets, err, size));   /* the shim's own statements */
}
