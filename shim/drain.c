/*
 * drain.c - a connection that is never used again must not stay on a
 * target the policy forbids.
 *
 * Connections move at their next statement (switch.c).  For those that
 * make none, the shim's ticker thread (reload.c: started only when the
 * policy has a [read_only] primary or replica) calls drain_step four times
 * a second, after its tick has noticed any switch, and, a moment after a
 * switch, drain_step asks the server to end the backends of this process's idle
 * connections still on the forbidden target (pg_terminate_backend, over a
 * connection of its own with the same arguments, so the same user).  The
 * program's PGconn is never touched from this thread: at its next use the
 * connection is moved as usual, and a program that never uses it again
 * never notices.  Connections inside a transaction are left alone until
 * drain_timeout, then ended too if in_transaction = terminate.
 */
#include "drain.h"
#include "log.h"
#include "readonly.h"
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DRAIN_GRACE_MS  1000      /* let busy programs move by themselves first */

/* Only the ticker thread uses these. */
static unsigned seen;             /* the read-only generation last seen */
static uint64_t switched;         /* mono_ms() of the switch being drained, or 0 */

struct victim {
	uint32_t backend;
	struct conn *c;          /* compared, never dereferenced, unless still mapped */
	PGconn *pg;
	struct connargs where;
};

static uint64_t mono_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

static int forbidden(uint32_t target)
{
	return readonly_on() ? target == TGT_PRIMARY : target == TGT_REPLICA;
}

struct collect {
	struct victim *v;
	int n, max;
	int terminate_in_transaction;
	unsigned gen;
};

static void collect_one(void *value, void *arg)
{
	struct conn *c = value;
	struct collect *col = arg;
	struct seg_conn *r = c->rec;
	if (col->n >= col->max || !c->routed || c->ro_gen == col->gen || !forbidden(r->target)
	    || r->status != CST_OK || !r->backend_pid)
		return;
	uint32_t st = __atomic_load_n(&r->cstate, __ATOMIC_RELAXED);
	if (st != CS_IDLE && !(col->terminate_in_transaction && st == CS_IN_TRANSACTION))
		return;
	struct victim *v = &col->v[col->n++];
	v->backend = r->backend_pid;
	v->c = c;
	v->pg = c->pg;
	v->where.n = 0;
	connargs_copy(&v->where, &c->where);
}

/* End one backend from a connection of our own to the same server.
 * 1 when the server ended it. */
static int terminate(struct victim *v)
{
	int ended = 0;
	if (g.disabled)
		return 0;            /* the process is exiting */
	const char *kw[CONNARGS_MAX + 2], *val[CONNARGS_MAX + 2];
	connargs_arrays(&v->where, kw, val);
	int n = v->where.n;
	kw[n] = "application_name";
	val[n] = "pqshim-drain";
	kw[n + 1] = val[n + 1] = NULL;
	PGconn *ctl = real.PQconnectdbParams(kw, val, 0);
	if (real.PQstatus(ctl) == CONNECTION_OK) {
		char sql[96];
		snprintf(sql, sizeof sql, "select pg_terminate_backend(%u)", v->backend);
		PGresult *r = real.PQexec(ctl, sql);
		if (real.PQresultStatus(r) != PGRES_TUPLES_OK)
			shim_log(LOG_WARNING, "could not end backend %u: %s", v->backend,
			         real.PQresultErrorMessage(r));
		else
			ended = strcmp(real.PQgetvalue(r, 0, 0), "t") == 0;
		real.PQclear(r);
	} else {
		shim_log(LOG_WARNING, "could not reach the server to end backend %u: %s", v->backend,
		         real.PQerrorMessage(ctl));
	}
	real.PQfinish(ctl);
	return ended;
}

/* The record says what the server now knows: that backend is gone.  The
 * program's PGconn learns it, and moves, at its next use. */
static void mark_ended(struct victim *v)
{
	pthread_mutex_lock(&g.lock);
	if (connmap_get(&g.map, v->pg) == v->c && v->c->rec->backend_pid == v->backend) {
		v->c->rec->backend_pid = 0;
		v->c->rec->status = CST_BAD;
	}
	pthread_mutex_unlock(&g.lock);
}

void drain_begin(void)
{
	seen = readonly_gen();
	switched = 0;
}

void drain_step(void)
{
	unsigned gen = readonly_gen();
	if (gen != seen) {
		seen = gen;
		switched = mono_ms();
	}
	if (!switched || mono_ms() - switched < DRAIN_GRACE_MS)
		return;
	struct victim v[32];
	struct collect col = { v, 0, 32, 0, gen };
	col.terminate_in_transaction = g.pol.in_transaction == INTX_TERMINATE
	                               && mono_ms() - switched >= g.pol.drain_timeout_ms;
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, collect_one, &col);
	pthread_mutex_unlock(&g.lock);
	for (int i = 0; i < col.n; i++) {
		if (terminate(&v[i])) {
			shim_log(LOG_INFO, "ended backend %u: its connection stayed on the "
			         "forbidden target", v[i].backend);
			mark_ended(&v[i]);
		}
		connargs_free(&v[i].where);
	}
	if (col.n == 0 && !col.terminate_in_transaction
	    && mono_ms() - switched >= g.pol.drain_timeout_ms)
		switched = 0;        /* nothing left to do for this switch */
}
