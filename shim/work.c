/*
 * work.c - the whole work path, for the calls the fast path (work_fast,
 * shim.h) turns away: the thread's first call, another connection than
 * last time, a cross-thread use, a read-only switch to follow, a reload
 * due, a slot to wait for.  When nothing stood in the way, the connection
 * becomes the thread's fast one.
 *
 * The modules below it report (a slot granted, deferred or refused; a
 * connection moved or closed); this file counts the refusals and turns
 * them into one verdict for the wrapper.
 */
#include "work.h"
#include "defer.h"
#include "log.h"
#include "readonly.h"
#include "record.h"
#include "segwatch.h"
#include "slots.h"
#include "startup.h"
#include "switch.h"

#include <stdio.h>

TLS char work_why[768];

/* pg (connection c, found in map epoch `epoch`) goes first among the
 * thread's fast connections; the one used longest ago drops out. */
static void fast_learn(PGconn *pg, struct conn *c, uint64_t epoch)
{
	if (t.depth)
		return;          /* the mark's offset is in t.fast_epoch (OWN) */
	if (t.fast_epoch != epoch) {
		for (int i = 0; i < FAST_WAYS; i++) {
			t.fast_pg[i] = pg;
			t.fast_conn[i] = c;
		}
		t.fast_epoch = epoch;
		return;
	}
	int i = 0;
	while (i < FAST_WAYS - 1 && t.fast_pg[i] != pg)
		i++;
	for (; i > 0; i--) {
		t.fast_pg[i] = t.fast_pg[i - 1];
		t.fast_conn[i] = t.fast_conn[i - 1];
	}
	t.fast_pg[0] = pg;
	t.fast_conn[0] = c;
}

/* A thread other than the opener sends on the connection: 0 to go on, or
 * 1 when cross_thread = deny refuses (work_why says). */
static int cross_thread_refused(struct conn *c)
{
	struct seg_conn *r = c->rec;
	record_thread_seen(r, t.tid);
	__atomic_store_n(&r->cross_thread_uses, r->cross_thread_uses + 1, __ATOMIC_RELAXED);
	switch (g.pol.cross_thread) {
	case CROSS_ALLOW:
		return 0;
	case CROSS_WARN:
		if (!c->warned) {
			c->warned = 1;
			shim_log(LOG_WARNING, "connection to %s opened by thread %d is used by thread %d "
			         "(cross_thread = warn)", r->server, (int)c->opener, (int)t.tid);
		}
		return 0;
	case CROSS_DENY:
	default:
		snprintf(work_why, sizeof work_why, "pqshim: statement refused: connection opened by "
		         "thread %d used by thread %d (cross_thread = deny, policy %s)", (int)c->opener,
		         (int)t.tid, g.policy_path[0] ? g.policy_path : "none");
		record_refused();
		return 1;
	}
}

static enum verdict slot_verdict(enum slot_wait w)
{
	switch (w) {
	case WAIT_GRANTED:
		return WORK_GO;
	case WAIT_DEFER:
		return WORK_DEFER;
	default:
		record_refused();
		return WORK_REFUSED_CAP;
	}
}

enum verdict work_wait(struct conn *c)
{
	return slot_verdict(slot_wait_active(c, 0, work_why, sizeof work_why));
}

enum verdict work_follow_switch(struct conn *c)
{
	if (switch_check(c, work_why, sizeof work_why) == SWITCH_STAYS)
		return WORK_GO;
	slots_release_active(c);     /* closed: its slot goes back */
	return WORK_CLOSED;
}

enum verdict work_begin(PGconn *pg, struct conn **cp, int may_defer)
{
	shim_enter();
	struct conn *c = conn_lookup(pg);
	*cp = c;
	if (!c)
		return WORK_GO;
	if (unlikely(segwatch_refusal(work_why, sizeof work_why))) {
		record_refused();
		return WORK_REFUSED_SEGMENT;
	}
	/* A fork child's copy of its parent's session: its socket leads
	 * nowhere now (startup.c), and the statement is refused here with
	 * words the program can act on. */
	if (unlikely(c->rec->flags & CONN_INHERITED) && g.pol.after_fork == FORK_PROTECT) {
		snprintf(work_why, sizeof work_why, "pqshim: statement refused: this connection was "
		         "opened by the parent process %d before fork(), and a child may not use it "
		         "(after_fork = protect, policy %s)", (int)g.proc->ppid,
		         g.policy_path[0] ? g.policy_path : "none");
		record_refused();
		return WORK_REFUSED_INHERITED;
	}
	if (unlikely(c->rec->flags & CONN_ORPHAN))
		slots_adopt_orphan(c);   /* its transaction goes on, on this thread */
	int plain = 1;
	if (unlikely(c->opener != t.tid)) {
		if (cross_thread_refused(c))
			return WORK_REFUSED_THREAD;
		plain = 0;       /* every such use is counted: never fast */
	}
	/* An idle connection about to work takes an active slot (if capped),
	 * before anything else reaches a server: a move below (a connect,
	 * the old session's settings read, set on the new one) is work too,
	 * and runs inside the slot.  (A deferred send follows a switch when
	 * it leaves: defer.c.) */
	struct seg_sem *sem = &hot.cap->sems[SEM_ACTIVE];
	uint8_t *hold = &c->rec->hold[SEM_ACTIVE];
	if (__atomic_load_n(&sem->max, __ATOMIC_RELAXED) && !slots_unpark(c) && *hold == HOLD_NONE) {
		c->rec->holder_tid = t.tid;   /* before the slot: see work_fast */
		if (!sem_try_acquire(sem, hold)) {
			/* a wait that keeps failing must still see a reload (a lane
			 * removed, a cap raised): the tick is otherwise after a send */
			if (clock_ticks() >= __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED))
				shim_tick();
			enum verdict v = slot_verdict(slot_wait_active(c, may_defer && !c->pipeline,
			                                               work_why, sizeof work_why));
			if (v != WORK_GO)
				return v;
		}
	}
	/* A tick due first (the drain signal asks for one, drain.c: the switch
	 * is seen before the connection it ended is used).  One time stamp
	 * serves the tick's test and the statement's, unless a tick or a move
	 * ran in between. */
	uint64_t now = clock_ticks();
	if (unlikely(now >= __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED))) {
		shim_tick();
		now = clock_ticks();
	}
	/* The policy switched since this connection last looked: move it? */
	if (unlikely(c->ro_gen != readonly_gen())) {
		if (work_follow_switch(c) != WORK_GO)
			return WORK_CLOSED;
		now = clock_ticks();
	}
	record_sent_at(c->rec, now);    /* the tick is done: no track_sent */
	/* The epoch is the one read before the look-up: a close, a switch or
	 * a deferred send since then has bumped it, and the next call will not
	 * trust this.  While a send waits in defer.c, or a hold rides on its
	 * thread's slot (HOLD_SHARED), no connection is fast (the fast paths
	 * then need no look at hot.deferrals, nor the fast settle at
	 * hot.shares: wrap_work.c). */
	if (plain && t.cache_pg == pg && t.cache_conn == c && c->ro_gen == readonly_gen()
	    && !__atomic_load_n(&hot.deferrals, __ATOMIC_ACQUIRE)
	    && !__atomic_load_n(&hot.shares, __ATOMIC_ACQUIRE)
	    && __atomic_load_n(&pqint.known, __ATOMIC_ACQUIRE))
		fast_learn(pg, c, t.cache_epoch);
	return WORK_GO;
}

struct conn *work_fast_lane(PGconn *pg)
{
	struct conn *c;
	if (!fast_find(pg, &c))
		return NULL;
	struct seg_conn *r = c->rec;
	if (!__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED)
	    || r->hold[SEM_ACTIVE] != HOLD_NONE)
		return NULL;
	r->holder_tid = t.tid;       /* before the slot: see work_fast */
	if (!lane_try_acquire(hot.cap, r->lane, c->lane_gen, &r->hold[SEM_ACTIVE], &r->lane_held))
		return NULL;     /* not a lane's CAS that failed: the whole path */
	t.sent = c;
	record_count(&r->queries);
	__atomic_store_n(&r->cstate, CS_ACTIVE, __ATOMIC_RELAXED);
	return c;
}

void work_settle_finish(struct conn *c, unsigned todo)
{
	if (todo & (SETTLE_RELEASE | SETTLE_HAND | SETTLE_PARK))
		slots_settle(c, todo);
	if (todo & SETTLE_KICK)
		defer_kick();
}

void work_pipeline(struct conn *c, int on)
{
	c->pipeline = on ? 1 : 0;
}
