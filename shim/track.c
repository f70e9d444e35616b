/*
 * track.c - the connection's life: before a connect (the rules, a record,
 * a connection slot), after it (the record filled, the connection mapped),
 * each connect or reset step, and the close.
 */
#include "track.h"
#include "defer.h"
#include "record.h"
#include "reload.h"
#include "route.h"
#include "segwatch.h"
#include "session.h"
#include "slots.h"
#include "startup.h"
#include "switch.h"
#include "readonly.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void count_connections(void *value, void *arg)
{
	struct conn *c = value;
	if (c->opener == t.tid)
		++*(unsigned *)arg;
}

/* Why the calling thread may not open another connection, or NULL. */
static const char *connect_refusal(char *buf, size_t size)
{
	if (unlikely(segwatch_connect_refusal(buf, size)))
		return buf;
	if (!g.policy_ok) {
		snprintf(buf, size, "pqshim: connection refused: the policy is unusable: %s "
		         "(on_error = fail-closed)", g.policy_error);
		return buf;
	}
	unsigned limit = g.pol.max_connections_per_thread, mine = 0;
	if (!limit)
		return NULL;
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, count_connections, &mine);
	pthread_mutex_unlock(&g.lock);
	if (mine < limit)
		return NULL;
	snprintf(buf, size, "pqshim: connection refused: thread %d already holds %u connections "
	         "(max_connections_per_thread = %u, policy %s)", (int)t.tid, mine, limit,
	         g.policy_path[0] ? g.policy_path : "none");
	return buf;
}

const char *track_connect_begin(struct conn **cp, char *buf, size_t size)
{
	*cp = NULL;
	shim_enter();
	if (g.disabled)
		return NULL;
	if (clock_ticks() >= __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED))
		shim_tick();         /* a fixed policy must be noticed by connects too */
	if (route_enabled() && !ticker_running())
		ticker_start();
	const char *why = connect_refusal(buf, size);
	if (why) {
		record_refused();
		return why;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (c) {
		c->opener = t.tid;
		record_claim(c);
	}
	if (slot_connect(c, buf, size) != WAIT_GRANTED) {
		record_refused();
		if (c)
			record_release(c, 0);
		free(c);
		return buf;
	}
	*cp = c;
	return NULL;
}

void track_connect_end(struct conn *c, PGconn *pg, struct connargs *args,
                       const struct connargs *where, int target, int redirected)
{
	if (!c || !pg) {
		connargs_free(args);
		if (c) {
			slots_release_all(c);
			record_release(c, 0);
			free(c);
		}
		return;
	}
	c->pg = pg;
	connargs_copy(&c->where, where);
	c->args = *args;             /* moved: the connection owns them now */
	args->n = 0;
	c->routed = c->args.n > 0 || route_enabled();
	c->ro_gen = readonly_gen();
	if (redirected)
		record_redirected();
	struct seg_conn *r = c->rec;
	r->tid = r->last_tid = t.tid;
	r->target = (uint32_t)target;
	r->flags = 0;
	r->nthreads = 1;
	memset(r->threads, 0, sizeof r->threads);
	r->threads[0] = t.tid;
	r->queries = r->xacts = r->cross_thread_uses = 0;
	r->opened_ns = record_now_ns();
	r->last_used = clock_ticks();
	record_describe(c);
	pthread_mutex_lock(&g.lock);
	if (connmap_put(&g.map, pg, c) != 0) {
		pthread_mutex_unlock(&g.lock);
		slots_release_all(c);
		record_release(c, 0);
		free(c);
		return;
	}
	if (c->idx >= 0) {
		__atomic_store_n(&r->state, SLOT_LIVE, __ATOMIC_RELEASE);
		seg_add(&g.seg.hdr->totals.connects, 1);
	} else if (g.seg.hdr) {
		seg_add(&g.seg.hdr->totals.untracked, 1);
	}
	__atomic_fetch_add(&g.proc->connections, 1, __ATOMIC_RELAXED);
	map_epoch_bump();
	pthread_mutex_unlock(&g.lock);
}

void track_connected(PGconn *pg)
{
	struct conn *c = conn_lookup(pg);
	if (!c)
		return;
	layout_verify(pg);
	record_connected(c);
}

int track_reset(PGconn *pg, int async)
{
	shim_enter();
	return switch_reset(conn_lookup(pg), async);
}

void track_close(PGconn *pg)
{
	if (!pg)
		return;
	if (unlikely(__atomic_load_n(&hot.state, __ATOMIC_ACQUIRE) != SHIM_READY))
		return;          /* nothing was ever tracked */
	if (unlikely(t.tid == 0))
		thread_register();
	pthread_mutex_lock(&g.lock);
	struct conn *c = connmap_del(&g.map, pg);
	if (c) {
		if (c->deferred) {
			pthread_mutex_unlock(&g.lock);
			defer_forget(c);
			pthread_mutex_lock(&g.lock);
		}
		slots_hand_over_locked(c);
		if (!slots_close_later(c)) {   /* (its transaction's end on the server: slots.c) */
			slots_release_all(c);
			record_release(c, 0);
		}
		__atomic_fetch_sub(&g.proc->connections, 1, __ATOMIC_RELAXED);
	}
	map_epoch_bump();
	pthread_mutex_unlock(&g.lock);
	if (c)
		session_forget(c);
	free(c);
}
