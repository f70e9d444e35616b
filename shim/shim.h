/*
 * shim.h - what every module above the core shares: the shim's view of one
 * PGconn (struct conn), the per-thread block, the process-wide state, and
 * the fast path's inline pieces, which call nothing.
 *
 * Every wrapper that sends work has the same shape (wrap_work.c):
 *
 *     c = work_fast(conn);                          // the thread's connection, as before?
 *     if (!c) return PQxxx_slow(...);               // no: libpq calling itself (t.depth:
 *                                                   // straight through), or look up,
 *                                                   // rules, wait, count
 *     r = OWN(real.PQxxx(...));                     // the call itself
 *     track_settle(c);                              // work may be complete (work.h)
 *
 * A nested call never passes work_fast's first compare (the depth mark is
 * in the thread's fast epoch: OWN) and goes straight through on the slow
 * path's first test.  An outermost one on a connection the thread sent on
 * lately, with nothing changed since, costs two compares, a time stamp, a
 * few stores into the connection's own record and, with a cap, one CAS on
 * the semaphore word (work_fast).  Anything else (another connection,
 * another thread's, a switch, a reload due, a full cap) takes the whole
 * path, work_begin (work.c).  No system call, lock or allocation happens
 * on either once the thread and the connection are known.
 */
#ifndef PQSHIM_SHIM_H
#define PQSHIM_SHIM_H

#include "connargs.h"
#include "connmap.h"
#include "pqint.h"
#include "real.h"
#include "segment.h"
#include "cap_lanes.h"
#include "clock.h"
#include "policy.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define SHIM_EXPORT __attribute__((visibility("default")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

struct prepared;              /* session.c */
struct deferred;              /* defer.c */

/* The shim's view of one PGconn. */
struct conn {
	PGconn *pg;
	struct seg_conn *rec;     /* the shared record, or &local when untracked */
	int idx;                  /* index of rec in the segment, -1 if local */
	pid_t opener;             /* kernel tid of the opening thread */
	unsigned warned;          /* cross-thread warning already logged */
	unsigned pipeline;        /* in pipeline mode (work_pipeline) */
	unsigned ro_gen;          /* readonly_gen() when its route was last checked */
	int routed;               /* args hold what the program asked for */
	int reroute;              /* reset by a switch: PQreset must follow the policy */
	struct connargs args;     /* the program's connect arguments (connargs.c) */
	struct connargs where;    /* ... as routed: where it is connected now */
	struct prepared *prepared; /* statements prepared by name (session.c) */
	int cancels;              /* the program's cancel objects followed (session.c) */
	struct deferred *deferred; /* a send waiting for its slot (defer.c; g.lock) */
	char lane[CAP_LANE_NAME]; /* its lane's name, "" = default (lanes.c) */
	unsigned lane_gen;        /* the lane table rec->lane was found in (lanes.c) */
	struct seg_conn local;
};

/* What the fast path reads of the process's state, together on one cache
 * line.  Each field is written by the module named. */
struct shim_hot {
	int state;                /* enum shim_state (startup.c; atomic) */
	int deferrals;            /* sends waiting in defer.c (atomic), plus
	                           * DEFER_UNINIT until shim_init: nonzero sends
	                           * PQgetResult down its slow path, which
	                           * initialises (the sends find no fast
	                           * connection then: a saved send bumps
	                           * map_epoch, and work.c makes none fast
	                           * while one waits) */
	int shares;               /* holds riding on their thread's slot,
	                           * HOLD_SHARED (slots.c; atomic) */
	int no_park;              /* this process's plain slots never park:
	                           * a private cap, scope = cluster (slots.c;
	                           * atomic): the settle gives them back at
	                           * once, without the park's CAS and its undo */
	uint64_t map_epoch;       /* bumped on every insert/remove and read-only
	                           * switch (atomic): thread caches check it.
	                           * Odd, so never the 0 of a fresh thread's cache;
	                           * 64 bits: it never comes round again */
	uint64_t next_tick;       /* clock_ticks() of the next look at the
	                           * policy file (reload.c; atomic) */
	struct seg_cap *cap;      /* the semaphores in force (slots.c) */
} __attribute__((aligned(64)));
_Static_assert(sizeof(struct shim_hot) == 64, "the fast path's fields fill one cache line");

extern struct shim_hot hot __attribute__((visibility("hidden")));

/* hot.deferrals != 0, relaxed, as one compare with memory on x86-64 (the
 * atomic builtin loads into a register first: one instruction more on the
 * PQgetResult wrapper's path, twice per statement). */
ALWAYS_INLINE int hot_deferrals(void)
{
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
	int nonzero;
	__asm__("cmpl $0, %1" : "=@ccne"(nonzero) : "m"(hot.deferrals));
	return nonzero;
#else
	return __atomic_load_n(&hot.deferrals, __ATOMIC_RELAXED) != 0;
#endif
}

enum shim_state { SHIM_UNINIT = 0, SHIM_READY = 1 };
#define DEFER_UNINIT (1 << 30)
#define DEFER_NOLAYOUT (1 << 29)  /* libpq's layout is not known (for good): the
                                   * PQgetResult wrapper's one test covers that
                                   * too (wrap_work.c); no send waits for it */
#define DEFER_SENDS (DEFER_NOLAYOUT - 1)   /* the count of sends waiting */

/* The process-wide state every module reads: who we are, the segment, the
 * policy in force, the connections.  Written at start-up and in a fork
 * child (startup.c, record.c), when the segment turns out unusable
 * (segwatch.c: proc, proc_idx) and by a reload (reload.c, `pol` and the
 * policy strings); every other module keeps its own state file-static. */
struct shim {
	int disabled;             /* secure-exec or no libpq: pass everything through */
	pid_t pid;                /* the process the records below belong to */
	struct segment seg;       /* hdr == NULL: no segment, track locally only */
	int proc_idx;
	struct seg_proc *proc;
	struct seg_proc proc_local;
	struct policy pol;
	unsigned pol_seq;         /* odd while reload.c rewrites `pol` (atomic) */
	int policy_ok;            /* 0: the policy failed to load */
	char policy_path[POLICY_STR_MAX];
	char policy_error[SEG_ERROR_MAX];
	pthread_mutex_t lock;     /* connmap writers, process registration */
	struct connmap map;
};

extern struct shim g __attribute__((visibility("hidden")));

#define FAST_WAYS 4

/* Per thread, in one block so that a wrapper finds all of it with one
 * address computation. */
struct thread_state {
	int depth;                /* >0: inside libpq, or the shim's own calls (OWN) */
	pid_t tid;                /* kernel tid; 0 until the thread's first call
	                           * and again in a fork child */
	/* A one-entry cache of the last look-up, valid while the process's
	 * map epoch (bumped by every open and close) is unchanged. */
	uint64_t cache_epoch;
	PGconn *cache_pg;
	struct conn *cache_conn;
	/* The connections the fast path may take as they are (work_fast):
	 * ours, opened by this thread, on the route in force.  Valid while
	 * the map epoch (also bumped by every read-only switch) is
	 * fast_epoch.  The one used last comes first; an event loop's few
	 * connections fit in the others.  Never a NULL way once filled: the
	 * first connection fills them all. */
	uint64_t fast_epoch;
	PGconn *fast_pg[FAST_WAYS];            /* (two arrays: a hit past the first */
	struct conn *fast_conn[FAST_WAYS];     /* way is one indexed load) */
	struct conn *sent;        /* what the last fast send went out on */
};
extern TLS struct thread_state t __attribute__((visibility("hidden")));

/*
 * OWN(call): make a call into libpq on the shim's own behalf.  The wrappers
 * it reaches (libpq's own exports, or the shim's when the call is a real.*
 * one that re-enters) pass straight through: nothing the shim does for
 * itself is tracked, capped or routed.  Nests; the mark is undone however
 * the expression's scope is left.  Works for void calls too.
 */
/* The depth mark also takes the thread's fast connections out of play:
 * fast_find compares the map epoch (odd, and never near 2^48) with
 * t.fast_epoch, which is DEPTH_EPOCH higher per mark, so a nested call
 * never matches and the fast paths need no look at t.depth (their whole
 * paths look first). */
#define DEPTH_EPOCH (1ull << 48)
static inline int depth_enter(void)
{
	t.fast_epoch += DEPTH_EPOCH;
	return t.depth++;
}
static inline void own_leave_(int *unused)
{
	(void)unused;
	t.depth--;
	t.fast_epoch -= DEPTH_EPOCH;
}
#define OWN(call) ({ \
	int own_mark_ __attribute__((cleanup(own_leave_), unused)) = depth_enter(); \
	call; })

/* Start one of the shim's own threads (detached, a small stack) at most
 * once per process: *started goes from 0 to 1, and back to 0 if the
 * thread cannot start (then -1). */
static inline int shim_thread_start(int *started, void *(*fn)(void *))
{
	if (__atomic_exchange_n(started, 1, __ATOMIC_ACQ_REL))
		return 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_t th;
	int r = pthread_create(&th, &attr, fn, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0)
		__atomic_store_n(started, 0, __ATOMIC_RELEASE);
	return r ? -1 : 0;
}

/* Every thread's cached look-ups are stale (under g.lock or a switch). */
static inline void map_epoch_bump(void)
{
	__atomic_fetch_add(&hot.map_epoch, 2, __ATOMIC_RELEASE);
}

/* pqint_verify, and no connection stays fast once libpq's layout turns
 * out unknown (the fast settle reads it in place without a look at
 * pqint.known: work.c makes none fast then). */
static inline void layout_verify(const PGconn *pg)
{
	if (unlikely(pqint_verify(pg))) {
		__atomic_fetch_or(&hot.deferrals, DEFER_NOLAYOUT, __ATOMIC_RELEASE);
		map_epoch_bump();
	}
}

ALWAYS_INLINE struct conn *conn_lookup(PGconn *pg)
{
	uint64_t epoch = __atomic_load_n(&hot.map_epoch, __ATOMIC_ACQUIRE);
	if (likely(pg == t.cache_pg && epoch == t.cache_epoch))
		return t.cache_conn;
	struct conn *c = (struct conn *)connmap_get(&g.map, pg);
	t.cache_pg = pg;
	t.cache_conn = c;
	t.cache_epoch = epoch;
	return c;
}

/* Is pg one of the thread's fast connections (see struct thread_state)?
 * 1 and *cp, or 0.  (A flag rather than a NULL test: the ways are never
 * NULL, and the compiler then knows it.) */
ALWAYS_INLINE int fast_find(PGconn *pg, struct conn **cp)
{
	if (unlikely(__atomic_load_n(&hot.map_epoch, __ATOMIC_ACQUIRE) != t.fast_epoch))
		return 0;
	if (likely(pg == t.fast_pg[0])) {
		*cp = t.fast_conn[0];
		return 1;
	}
	for (int i = 1; i < FAST_WAYS; i++)
		if (pg == t.fast_pg[i]) {
			*cp = t.fast_conn[i];
			return 1;
		}
	return 0;
}

/* Forget the thread's look-up cache and fast connections (a thread's
 * registration, a fork child). */
static inline void thread_caches_forget(void)
{
	t.cache_pg = NULL;
	t.cache_epoch = 0;       /* the map epoch is odd: never equal */
	t.fast_epoch = (uint64_t)t.depth * DEPTH_EPOCH;   /* even, as the marks leave it */
}

/* Add one to a counter of the connection's own record.  Only the thread
 * using the connection writes these (libpq forbids concurrent use of one
 * PGconn), and readers load them whole: on x86-64 one unlocked add to
 * memory (an aligned 8-byte store is never torn), elsewhere a relaxed
 * load and store. */
ALWAYS_INLINE void record_count(uint64_t *n)
{
#if defined(__x86_64__)
	__asm__("addq $1, %0" : "+m"(*n));
#else
	__atomic_store_n(n, *n + 1, __ATOMIC_RELAXED);
#endif
}

/* A statement leaves: count it, the connection is active. */
ALWAYS_INLINE void record_sent_at(struct seg_conn *r, uint64_t now)
{
	record_count(&r->queries);
	__atomic_store_n(&r->cstate, CS_ACTIVE, __ATOMIC_RELAXED);
	__atomic_store_n(&r->last_used, now, __ATOMIC_RELAXED);
}

/* PQtransactionStatus(pg), read in place when libpq's layout is known
 * (pqint.c checked the major version): it is what libpq itself does. */
ALWAYS_INLINE PGTransactionStatusType xact_status(const PGconn *pg)
{
	if (likely(pqint.known))
		return pqint_xact_status(pg);
	return real.PQtransactionStatus(pg);
}

/* An active hold riding on its thread's slot (nested = share) ends: 1, or
 * 0 if the slot was handed over to it meanwhile (it is HELD now). */
static inline int hold_unshare(uint8_t *hold)
{
	uint8_t shared = HOLD_SHARED;
	if (!__atomic_compare_exchange_n(hold, &shared, HOLD_NONE, 0, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE))
		return 0;
	__atomic_fetch_sub(&hot.shares, 1, __ATOMIC_RELAXED);
	return 1;
}

/* What settle_state leaves to do (work_settle_finish, work.c). */
#define SETTLE_RELEASE 1u   /* the slot's release must finish on the slow path (slots.c) */
#define SETTLE_KICK    2u   /* results done: an event loop's deferred sends may go (defer.c) */
#define SETTLE_HAND    4u   /* the slot goes back, or to a connection sharing it (slots.c) */
#define SETTLE_PARK    8u   /* the parked slot's word shows more: slots_park_slow */

/* The active slot goes back (settle_state): 0 when done, else what is
 * left to do. */
ALWAYS_INLINE unsigned settle_release(struct seg_conn *r)
{
	uint8_t *hold = &r->hold[SEM_ACTIVE];
	uint8_t h = __atomic_load_n(hold, __ATOMIC_RELAXED);
	if (likely(h == HOLD_HELD)) {
held:
		if (unlikely(__atomic_load_n(&hot.shares, __ATOMIC_RELAXED)))
			return SETTLE_HAND;   /* another may ride on it */
		if (unlikely(cap_release_active(hot.cap, hold, &r->lane_held) == SEM_RELEASE_SLOW))
			return SETTLE_RELEASE;
		return 0;
	}
	if (h == HOLD_SHARED && !hold_unshare(hold))
		goto held;            /* handed over to it meanwhile (slots.c) */
	if (h == HOLD_WAITING)
		__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
	return 0;
}

/* Work may have completed: libpq's own view (PQtransactionStatus says
 * ACTIVE while results are pending, IDLE only outside a transaction)
 * becomes the record's state; idle outside a transaction gives the active
 * slot back.  Calls nothing: returns what is left to do, if anything.
 * `deferrals`: 0 when the caller knows this process has no deferred send
 * (a fast connection: the map epoch is bumped when one is saved, and no
 * thread makes a connection fast while one waits; work.c), so no look at
 * hot.deferrals is needed. */
ALWAYS_INLINE unsigned settle_state_(struct conn *c, PGTransactionStatusType ts, int deferrals)
{
	struct seg_conn *r = c->rec;
	uint32_t was = r->cstate;
	unsigned todo = 0;
	/* The common case first: an autocommit statement's results are done. */
	if (likely(ts == PQTRANS_IDLE) && likely(was == CS_ACTIVE)) {
		record_count(&r->xacts);
		todo = settle_release(r);
		__atomic_store_n(&r->cstate, CS_IDLE, __ATOMIC_RELAXED);
		goto done;
	}
	uint32_t now;
	switch (ts) {
	case PQTRANS_ACTIVE:  now = CS_ACTIVE; break;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR: now = CS_IN_TRANSACTION; break;
	default:              now = CS_IDLE; break;
	}
	if (now == was)
		return 0;
	if (now == CS_IDLE) {
		if (was == CS_ACTIVE || was == CS_IN_TRANSACTION)
			record_count(&r->xacts);
		todo = settle_release(r);
	}
	__atomic_store_n(&r->cstate, now, __ATOMIC_RELAXED);
done:
	/* Results done on one of an event loop's connections: its deferred
	 * sends may take the slot, or must stop waiting for it (defer.c). */
	if (deferrals && was == CS_ACTIVE
	    && unlikely(__atomic_load_n(&hot.deferrals, __ATOMIC_RELAXED) & DEFER_SENDS))
		todo |= SETTLE_KICK;
	return todo;
}
#define settle_state(c, ts) settle_state_(c, ts, 1)

/*
 * The fast path of the outermost call of a thread that sends a statement
 * on pg: the connection is one this thread sent on lately, nothing has
 * changed since (the map epoch: opens, closes, read-only switches, a send
 * deferred) and a slot, if one is needed, is free.  Then take the slot,
 * count, stamp (*now) and return the connection (also in t.sent).
 * Otherwise do nothing and return NULL: the caller takes the whole path
 * (work_begin, work.c).  Nothing here calls out, so the wrapper's
 * arguments stay in their registers; work_fast_due says if a tick is due.
 */
ALWAYS_INLINE struct conn *work_fast(PGconn *pg, uint64_t *now)
{
	struct conn *c;
	if (unlikely(!fast_find(pg, &c)))
		return NULL;
	t.sent = c;
	struct seg_conn *r = c->rec;
	/* An idle connection about to work takes an active slot (if capped). */
	struct seg_sem *sem = &hot.cap->sems[SEM_ACTIVE];
	uint32_t max = __atomic_load_n(&sem->max, __ATOMIC_RELAXED);
	if (max) {
		uint8_t h = r->hold[SEM_ACTIVE];
		/* the holder first: a thread that held it before and exits now
		 * must not take this slot for its own (slots_thread_exit) */
		if (likely(h == HOLD_PARKED)) {
			/* its own slot, parked at its last statement's end (cap.h):
			 * one CAS, no look at the word; a sweep took it: the whole
			 * path waits for one */
			r->holder_tid = t.tid;
			if (unlikely(!hold_unpark(&r->hold[SEM_ACTIVE])))
				return NULL;
		} else if (h == HOLD_NONE) {
			r->holder_tid = t.tid;
			if (unlikely(!sem_try_acquire_max(sem, &r->hold[SEM_ACTIVE], max)))
				return NULL;   /* full, lanes in force (work_fast_lane), an audit */
		} else if (unlikely(h == HOLD_SWEEPING)) {
			return NULL;
		}
	}
	record_count(&r->queries);
	__atomic_store_n(&r->cstate, CS_ACTIVE, __ATOMIC_RELAXED);
	/* the time stamp here, with r at hand (work_fast_stamp would load
	 * c->rec again after the atomic stores) */
	*now = clock_ticks();
	__atomic_store_n(&r->last_used, *now, __ATOMIC_RELAXED);
	return c;
}

/* Is a look at the policy file due (reload.c), by work_fast's stamp?  0:
 * nothing else to do; 1: the caller ticks (shim_tick) before it sends. */
ALWAYS_INLINE int work_fast_due(uint64_t now)
{
	return unlikely(now >= __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED));
}

/* work_fast turned a fast connection away because the plain CAS failed:
 * with lanes in force that is every time, and the lane's own CASes may
 * take the slot without the lock (work.c, out of line: a call inside
 * work_fast would make every wrapper save its arguments).  The
 * connection as work_fast returns it, or NULL for the whole path. */
struct conn *work_fast_lane(PGconn *pg);

/* The fast path's time stamp, before the send: when it left, and whether
 * a look at the policy file is due (reload.c).  1: nothing else to do;
 * 0: the caller ticks (shim_tick) before it sends. */
ALWAYS_INLINE int work_fast_stamp(struct conn *c)
{
	uint64_t now = clock_ticks();
	__atomic_store_n(&c->rec->last_used, now, __ATOMIC_RELAXED);
	return likely(now < __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED));
}

#endif
