/*
 * cap.h - the concurrency cap: counting semaphores in the shared segment
 * (max_active, max_connections; one per lane later) that every process of
 * a policy shares, with FIFO waiting, crash-safe accounting and stats.
 *
 * A semaphore is one 64-bit word: count (slots held) | waiting (queued
 * waiters) | FROZEN | epoch.  The uncontended acquire and release are one
 * CAS on that word: no system call, no lock.  Everything else - queueing,
 * hand-off to the head waiter, the repair after a crash - happens under one
 * robust, process-shared mutex (the kernel hands it over with EOWNERDEAD
 * when its holder dies), and a waiter sleeps on a futex in its own queue
 * entry.
 *
 * Who holds a slot is written in the holder's connection record (hold
 * state) around the CAS, so that when a process dies the count can be
 * rebuilt exactly: the audit freezes the word (fast paths then fall to the
 * mutex), counts the live holders and thaws with the next epoch.  Dead
 * processes' slots simply stop being counted.
 *
 * The audit waits for nobody.  A hold caught between its CAS on the word
 * and its own state change (ACQUIRING, RELEASING) is decided at once and
 * the owner learns the verdict from the hold itself:
 *  - ACQUIRING: not counted; the audit turns it to NONE, and the acquirer,
 *    whose final CAS ACQUIRING -> HELD then fails, holds nothing (if its
 *    word CAS had landed, the recount erased it);
 *  - RELEASING: counted; the audit turns it to RELEASING_COUNTED, and the
 *    releaser owes the count one decrement, which it makes under the mutex
 *    (cap_release_slow) - whether or not its word CAS had landed.
 * Each fast path reads the word once before touching its hold and only
 * CASes a word of that same epoch, so a CAS never lands on a recount that
 * has already judged it.  (An audit that waited instead for an announced
 * CAS to finish would wait, holding the mutex, on a releaser blocked on
 * that very mutex.)
 *
 * Parked slots (SEM_ACTIVE only; a shared cap of scope = host, no lanes:
 * never a lane's slot, a shared hold, scope = cluster, whose leader counts
 * demand from the count, nor a private cap, which nobody sweeps).  An autocommit
 * statement's end does not give its plain slot back: its hold goes HELD ->
 * PARKED (one CAS), then one load of the word; the connection's next
 * statement takes it again with one CAS PARKED -> HELD and never touches
 * the word.  A parked slot is counted (the server never sees more than max
 * at work: its holder is idle) but belongs to whoever needs it: the
 * moment anything else wants a slot it is taken back by a sweep
 * (cap_sweep_parked_locked, under the mutex: PARKED -> SWEEPING, then the
 * release's slow path hands it to the head waiter or counts it down, then
 * NONE).  The owner and a sweeper race only by CAS on the hold: one wins.
 * SEM_SWEPT in the word says "nobody parked since the last sweep": a sweep
 * sets it before it scans the records, a parker that finds it set clears
 * it (cap_park_slow, with the checks below), and a sweep that finds it
 * set already (a waiter's) need not look at the records at all.  Who
 * sweeps: a waiter about to queue, once its waiting count is in the word; a change of max (a lowered cap, or
 * none); lanes put in force; scope = cluster.  Each makes its change to
 * the word (or to max, scope) first, then sweeps; a parker CASes its hold
 * first, then loads the word, and stays parked only when the word shows
 * nothing (no waiter, no flag, SEM_SWEPT clear): Dekker's pair, so
 * either the sweep finds the PARKED hold or the parker sees the change
 * and gives the slot back the normal way.  (A parker finding SEM_SWEPT
 * set rechecks max, scope and the count after its load, and clears the
 * bit by CAS.)  Giving a connection's holds back (PQfinish, a thread's
 * exit, the drainer) sweeps a PARKED hold the same way.  After a crash:
 * PARKED counts like HELD (a dead process's are not counted, as its HELD
 * ones); SWEEPING means its sweeper died holding the mutex (sweeps run
 * only under it): the audit makes it NONE, uncounted, and rebuilds the
 * count whatever the sweep had done; the owner's next statement then takes
 * a slot anew.
 *
 * Invariant (outside an audit, i.e. whenever the mutex is free): count ==
 * number of live connection records whose hold for that semaphore is HELD,
 * PARKED, RELEASING or RELEASING_COUNTED, plus the live GRANTED queue
 * entries, except for fast-path CASes of the current epoch in flight.
 * waiting == number of QUEUED and CANCELLED entries (a cancelled entry is
 * swept, and uncounted, by the next holder of the mutex), the lanes' queue
 * included (cap_lanes.h).
 */
#ifndef PQSHIM_CAP_H
#define PQSHIM_CAP_H

#include <pthread.h>
#include <stdint.h>

#include "cap_spin.h"

#define CAP_SEMS          2      /* SEM_ACTIVE, SEM_CONNECTIONS (lanes later) */
#define CAP_HIST_BUCKETS  28     /* wait times: bucket i counts waits < 2^i µs,
                                  * the last one everything longer */
#define SEG_MAX_WAITERS   1024

enum sem_id { SEM_ACTIVE = 0, SEM_CONNECTIONS = 1 };

/* A connection's hold on one semaphore (seg_conn.slot[sem]). */
enum hold_state {
	HOLD_NONE = 0,
	HOLD_ACQUIRING,          /* about to CAS the count up */
	HOLD_HELD,               /* counted */
	HOLD_RELEASING,          /* about to CAS the count down */
	HOLD_WAITING,            /* queued; not counted */
	HOLD_SHARED,             /* nested = share: rides on its thread's slot, not counted */
	HOLD_RELEASING_COUNTED,  /* RELEASING, counted by an audit: the releaser
	                          * finishes under the mutex (see the top) */
	HOLD_PARKED,             /* counted, the connection idle: its next statement
	                          * takes it back, anyone else sweeps it (the top) */
	HOLD_SWEEPING,           /* a sweep gives a PARKED hold back (under the mutex) */
};

/* The semaphore word. */
#define SEM_COUNT_BITS   24
#define SEM_COUNT_MASK   ((1ull << SEM_COUNT_BITS) - 1)
#define SEM_WAIT_SHIFT   24
#define SEM_WAIT_ONE     (1ull << SEM_WAIT_SHIFT)
#define SEM_WAIT_MASK    ((1ull << 23) - 1)    /* bit 47, the field's top, is SEM_EXCL */
#define SEM_EXCL         (1ull << 47)   /* lanes: an exclusive lane's work waits or runs
                                         * (cap_lanes.h); real waiters never reach 2^23 */
#define SEM_FROZEN       (1ull << 48)
#define SEM_CLOSED       (1ull << 49)   /* no slot granted at all (scope = cluster: a
                                         * host that holds no lease; lease.h) */
#define SEM_LANES        (1ull << 50)   /* lanes in force: cap_lanes.h */
#define SEM_FLAGS_END    51        /* the bits below: count | waiting | the flags above */
#define SEM_SWEPT        (1ull << SEM_FLAGS_END)   /* no slot parked since the last
                                                    * sweep (the top) */
#define SEM_EPOCH_SHIFT  52        /* bumped by every audit's thaw */
#define SEM_EPOCH_ONE    (1ull << SEM_EPOCH_SHIFT)
#define SEM_STATE_MASK   ((1ull << SEM_FLAGS_END) - 1)  /* count | waiting | EXCL | FROZEN |
                                                         * CLOSED | LANES: not PARKED */
/* The word lets a parked slot stay parked: no waiter, no flag, SEM_SWEPT
 * clear (bits SEM_WAIT_SHIFT up to the epoch all 0: two shifts, which set
 * the flags the branch tests). */
#define sem_park_ok(w)   ((((w) << (64 - SEM_EPOCH_SHIFT)) >> (64 - SEM_EPOCH_SHIFT + SEM_WAIT_SHIFT)) \
                          == 0)
#define sem_epoch(w)     ((w) >> SEM_EPOCH_SHIFT)
#define sem_count(w)     ((uint32_t)((w) & SEM_COUNT_MASK))
#define sem_waiting(w)   ((uint32_t)(((w) >> SEM_WAIT_SHIFT) & SEM_WAIT_MASK))

struct seg_sem {
	uint64_t word;           /* count | waiting | FROZEN (atomic) */
	uint32_t max;            /* 0 = no cap (atomic; any process may change it) */
	uint32_t pad;
	uint64_t acquired;       /* slots granted on the slow path (with or without a
	                          * wait); the one-CAS fast path counts nothing */
	uint64_t waits;          /* acquisitions that had to wait */
	uint64_t timeouts;       /* waits that gave up at wait_timeout */
	uint64_t refused;        /* refused at once (nested = fail); shares are not counted */
	uint64_t wait_ns_sum;    /* total time waited, for the histogram's _sum */
	uint64_t hist[CAP_HIST_BUCKETS];
};

/* QUEUED -> GRANTED (under the mutex) or QUEUED -> CANCELLED (the waiter
 * itself, at its deadline, without the mutex) -> FREE (swept).  GRANTED ->
 * ABANDONED: granted, but the mutex did not come to take it (its holder is
 * stopped); the next audit frees it, uncounted.  GRANTED -> QUEUED (under
 * the mutex): revoked, its owner stopped before it claimed it (cap_revoke.c);
 * the claim is under the mutex too, so the two never race. */
enum waiter_state { WAITER_FREE = 0, WAITER_QUEUED, WAITER_GRANTED, WAITER_CANCELLED,
                    WAITER_ABANDONED };

struct seg_waiter {
	uint32_t state;          /* enum waiter_state (atomic) */
	uint32_t futex;          /* the waiter sleeps here; bumped to wake it */
	uint64_t ticket;         /* FIFO order */
	uint32_t sem;            /* enum sem_id */
	uint32_t proc;           /* seg_proc index */
	int32_t pid;
	int32_t tid;
	int32_t conn;            /* seg_conn index, -1 for a connect not yet recorded */
	uint32_t granted_ms;     /* cap_now_ns() in ms (mod 2^32, never 0) when last
	                          * GRANTED; still set while QUEUED: its grant was
	                          * revoked (cap_revoke.c), admission passes it by
	                          * until it runs again.  Under the lock. */
	uint64_t since_ns;       /* CLOCK_REALTIME when it queued */
};

/*
 * Lanes (issue 14): named caps inside the global one.  The layout is here
 * (it is the segment's); what the fields mean, how a lane's slot is taken
 * without the lock and every invariant: cap_lanes.h.
 */
#define CAP_LANES         17     /* the default lane and POLICY_MAX_LANES */
#define CAP_LANE_NAME     64
#define CAP_LANE_WAITERS  256
#define CAP_UNCAPPED      ((uint32_t)SEM_COUNT_MASK - 1)
#define LANE_HELD_EXCL    0x80   /* seg_conn.lane_held: an exclusive hold */
#define CAP_LANE_NONE     0xffffffffu  /* seg_lane.max: scope = cluster, this host
                                        * holds none of the lane's slots */
enum cap_gate { CAP_GATE_OFF = 0,  /* not scope = cluster: lanes on local terms */
                CAP_GATE_LOCAL,    /* scope = cluster, the exclusive on local terms (no
                                    * exclusive lane, or fail-open) */
                CAP_GATE_SHUT,     /* gated: the cluster's gate is not this host's */
                CAP_GATE_OPEN };   /* gated: this host holds the gate exclusive */

struct seg_lane {
	char name[CAP_LANE_NAME];    /* "default" for lane 0 */
	uint32_t max;                /* 0 = only the global cap */
	int32_t priority;
	uint32_t exclusive;
	uint32_t waiting;            /* queued (under the lock) */
	uint64_t word;               /* the lane word: slots held | LW_* | epoch
	                              * (atomic; cap_lanes.h) */
	uint64_t acquired;
	uint64_t waits;
	uint64_t timeouts;
	uint64_t wait_ns_sum;
	uint64_t hist[CAP_HIST_BUCKETS];
};

struct seg_lane_waiter {
	uint32_t state;              /* enum waiter_state (atomic; QUEUED -> CANCELLED
	                              * by the waiter at its deadline, as seg_waiter) */
	uint32_t futex;
	uint64_t ticket;
	int32_t priority;
	uint32_t lane;
	uint32_t exclusive;
	uint32_t proc;
	int32_t pid;
	int32_t tid;
	uint32_t granted_ms;         /* as seg_waiter's: when last GRANTED; still set
	                              * while QUEUED, revoked (cap_revoke.c): passed
	                              * by, and not in excl_waiting, until it runs
	                              * again.  Under the lock. */
	uint32_t pad;
	uint64_t since_ns;           /* CLOCK_REALTIME when it queued */
};

struct seg_lanes {
	uint32_t nlanes;             /* the policy's lanes; 0: none (fast paths as before) */
	uint32_t gen;                /* bumped when the table changes (atomic) */
	uint32_t excl_active;        /* exclusive holders (0 or 1) */
	uint32_t excl_waiting;       /* exclusive waiters queued */
	uint32_t nwaiting;           /* lane waiters queued */
	uint32_t gate;               /* scope = cluster with an exclusive lane: may the
	                              * exclusive run here (CAP_GATE_*; lease_seg.h) */
	uint64_t next_ticket;
	struct seg_lane lane[CAP_LANES];
	struct seg_lane_waiter waiters[CAP_LANE_WAITERS];
};

struct seg_cap {
	pthread_mutex_t lock;    /* robust, process-shared: queue, hand-off, audit */
	uint64_t next_ticket;    /* under the lock */
	uint32_t scope;          /* enum cap_scope of the last policy loaded */
	uint32_t audit_due;      /* dead records were reaped: the next holder of
	                          * the mutex recounts (atomic) */
	struct seg_sem sems[CAP_SEMS];
	struct seg_waiter waiters[SEG_MAX_WAITERS];
	struct seg_lanes lanes;  /* issue 14 */
	struct cap_spin spin;    /* the head waiter's foresight (cap_spin.h) */
	uint32_t waiters_hi;     /* waiters[0, hi) have ever been used (under the lock):
	                          * the hand-off's scans stop there */
	uint32_t sweep_due;      /* a waiter gave up since the last sweep (atomic) */
};

/* Histogram bucket of a wait of `ns` nanoseconds. */
static inline unsigned cap_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned b = 0;
	while (b < CAP_HIST_BUCKETS - 1 && us >= (1ull << b))
		b++;
	return b;
}

/* Upper bound of bucket b in milliseconds (the last bucket: +Inf). */
static inline double cap_bucket_le_ms(unsigned b)
{
	return (double)(1ull << b) / 1000.0;
}


/* ---- operations (cap.c; shared by the shim and the tool) --------------- */

struct segment;

/* The uncontended paths: one CAS on the semaphore word.  1 on success; 0
 * when the caller must take the slow path (full, waiters queued, frozen, an
 * audit came by).  `max` as the caller read it (0: no cap). */

/* A hold's last step after its CAS on the word: 1 unless an audit judged
 * it meanwhile (see the top). */
static inline int hold_finish(uint8_t *hold, uint8_t from, uint8_t to)
{
	return __atomic_compare_exchange_n(hold, &from, to, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static inline int sem_try_acquire_max(struct seg_sem *s, uint8_t *hold, uint32_t max)
{
	/* Not frozen, nobody queued and count below max, in one compare: the
	 * flags and the waiting count lie above the count's bits (max < 2^24). */
	uint64_t limit = max ? max : SEM_COUNT_MASK;
	uint64_t w0 = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST), w = w0;
	/* No room (full, queued, frozen, lanes in force): nothing announced. */
	if (__builtin_expect((w & SEM_STATE_MASK) >= limit, 0))
		return 0;
	/* Announce before the CAS: an audit that freezes the word after our
	 * CAS must find us.  The word was read before: we only CAS in its
	 * epoch (a failed CAS reloads w, hence the epoch's look from the
	 * second try).  (Inline whole: a call here would make the wrapper
	 * save its arguments.) */
	__atomic_store_n(hold, HOLD_ACQUIRING, __ATOMIC_SEQ_CST);
	do {
		if (__builtin_expect(__atomic_compare_exchange_n(&s->word, &w, w + 1, 1,
		                                                 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED), 1))
			return hold_finish(hold, HOLD_ACQUIRING, HOLD_HELD);
	} while ((w & SEM_STATE_MASK) < limit && sem_epoch(w ^ w0) == 0);
	__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
	return 0;
}

static inline int sem_try_acquire(struct seg_sem *s, uint8_t *hold)
{
	return sem_try_acquire_max(s, hold, __atomic_load_n(&s->max, __ATOMIC_RELAXED));
}

/* What sem_release did. */
enum sem_release_result {
	SEM_RELEASE_NOT_MINE = -1,  /* not HELD: another thread is giving it back, or none */
	SEM_RELEASE_SLOW = 0,       /* claimed; the slow path must finish (cap_release_slow) */
	SEM_RELEASE_DONE = 1,
	SEM_RELEASE_RETRY = 2,      /* sem_release_first only: claimed, the first CAS did
	                             * not land: sem_release_retry goes on */
};

/*
 * Give a held slot back.  Claiming the release (HELD -> RELEASING) makes
 * only one of two threads racing to give the same slot back win (a thread
 * exiting, the one using the connection).  Then one CAS down on the word,
 * in the epoch read before the claim: an audit since then has counted us,
 * and the slow path gives that count back.
 */
static __attribute__((noinline, unused)) enum sem_release_result
sem_release_retry(struct seg_sem *s, uint8_t *hold, uint64_t w0, uint64_t w)
{
	for (;;) {
		if (sem_epoch(w ^ w0) != 0)
			return SEM_RELEASE_SLOW;
		/* With waiters queued the slot is handed over under the lock,
		 * unless the count is above a lowered max. */
		uint64_t st = w & SEM_STATE_MASK;
		if (st - 1 >= SEM_COUNT_MASK) {
			uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
			if ((st & (SEM_FROZEN | SEM_LANES)) || sem_count(st) == 0 || !max
			    || sem_count(st) <= max)
				return SEM_RELEASE_SLOW;
		}
		if (__atomic_compare_exchange_n(&s->word, &w, w - 1, 1, __ATOMIC_SEQ_CST,
		                                __ATOMIC_RELAXED))
			/* Fails only if an audit counted us after our CAS: we owe it one. */
			return hold_finish(hold, HOLD_RELEASING, HOLD_NONE)
			       ? SEM_RELEASE_DONE : SEM_RELEASE_SLOW;
	}
}

/* sem_release's first attempt, inline whole (the fast settle calls no
 * function on its way: wrap_work.c): NOT_MINE, DONE, SLOW, or RETRY with
 * *w0 (the word before the claim) and *w (after the CAS that failed) for
 * sem_release_retry. */
__attribute__((always_inline)) static inline enum sem_release_result
sem_release_first(struct seg_sem *s, uint8_t *hold, uint64_t *w0, uint64_t *w)
{
	*w0 = *w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	if (!hold_finish(hold, HOLD_HELD, HOLD_RELEASING))
		return SEM_RELEASE_NOT_MINE;
	/* Common: held (count >= 1), nobody queued, no flag: the bits from
	 * SEM_WAIT_SHIFT up to SEM_SWEPT are 0 (shifts, not a 64-bit mask). */
	if (__builtin_expect(((*w << (64 - SEM_FLAGS_END)) >> (64 - SEM_FLAGS_END + SEM_WAIT_SHIFT))
	                     == 0 && sem_count(*w) != 0, 1)
	    && __builtin_expect(__atomic_compare_exchange_n(&s->word, w, *w - 1, 1, __ATOMIC_SEQ_CST,
	                                                    __ATOMIC_RELAXED), 1))
	{
		/* Fails only if an audit counted us after our CAS: we owe it one. */
		if (__builtin_expect(hold_finish(hold, HOLD_RELEASING, HOLD_NONE), 1))
			return SEM_RELEASE_DONE;
		return SEM_RELEASE_SLOW;
	}
	return SEM_RELEASE_RETRY;
}

static inline enum sem_release_result sem_release(struct seg_sem *s, uint8_t *hold)
{
	uint64_t w0, w;
	enum sem_release_result r = sem_release_first(s, hold, &w0, &w);
	if (__builtin_expect(r == SEM_RELEASE_RETRY, 0))
		return sem_release_retry(s, hold, w0, w);
	return r;
}

/* A parked slot's connection works again: 1 if the slot is its own again
 * (HELD), 0 if a sweep took it (SWEEPING, then NONE: take one anew). */
static inline int hold_unpark(uint8_t *hold)
{
	return hold_finish(hold, HOLD_PARKED, HOLD_HELD);
}

enum cap_result { CAP_OK = 0, CAP_TIMEOUT, CAP_NESTED, CAP_ERROR, CAP_BUSY };

/* Make a process-private cap (scope = process). */
void cap_init_private(struct seg_cap *cap);

/*
 * Wait for a slot of `sem`, first come first served, at most timeout_ns.
 * `seg` is the segment the cap lives in (NULL: private).  When waiting
 * would be needed and `holds_other` says the calling thread already holds
 * a slot, the result is CAP_NESTED at once instead (it would wait on
 * itself).  *waited_ns receives the time spent.
 */
enum cap_result cap_acquire_slow(struct segment *seg, struct seg_cap *cap, int sem,
                                 uint8_t *hold, uint32_t proc, int tid,
                                 uint64_t timeout_ns, int holds_other,
                                 uint64_t *waited_ns);

/* The same wait in slices, for a caller that looks around between them
 * (its own lost connections may hold what it waits for): cap_wait_begin
 * answers at once or queues (CAP_WAITING); each cap_wait_on then waits at
 * most a slice (200 ms) and answers CAP_WAITING again or the end.  The
 * state lives in the caller's struct cap_wait. */
#define CAP_WAITING ((enum cap_result)100)
struct cap_wait {
	struct segment *seg;
	struct seg_cap *cap;
	struct seg_sem *s;
	struct seg_proc *p;
	struct seg_waiter *me;
	uint8_t *hold;
	uint64_t start, deadline, next_look;
	uint64_t waited_ns;      /* once it has ended */
};
enum cap_result cap_wait_begin(struct cap_wait *w, struct segment *seg, struct seg_cap *cap,
                               int sem, uint8_t *hold, uint32_t proc, int tid,
                               uint64_t timeout_ns, int holds_other);
enum cap_result cap_wait_on(struct cap_wait *w);

/* Finish a release that sem_release left to the slow path (the hold is
 * RELEASING or RELEASING_COUNTED, and counted): give the slot to the head
 * waiter if one is queued, else count it down. */
void cap_release_slow(struct segment *seg, struct seg_cap *cap, int sem, uint8_t *hold);

/* Move a held slot from one hold to another that shares it (HOLD_SHARED):
 * the count does not change.  1 if done; 0 if either hold was not (any
 * longer) in that state. */
int cap_hand_over(struct segment *seg, struct seg_cap *cap, uint8_t *from, uint8_t *to);

/* Take every parked slot back (the top): SEM_SWEPT set, then each
 * PARKED hold of the segment's records given to the head waiter or
 * counted down.  A private cap (seg NULL) never parks.  With the lock:
 * cap_sweep_parked_locked (cap_int.h). */
void cap_sweep_parked(struct segment *seg, struct seg_cap *cap);

/* A parked slot's one look at the word (sem_park_ok) found more:
 * clear SEM_SWEPT if the slot may stay parked (a shared cap, not scope =
 * cluster, a max, the count within it, nobody waiting, no flag): 1; else
 * take it back: 0, the hold HELD again, for the caller to give back the
 * normal way (to the head waiter; slots.c: the lanes' way if they came
 * into force), or 1 if a sweep took it first. */
int cap_park_slow(struct segment *seg, struct seg_cap *cap, uint8_t *hold);

/* Park a HELD plain slot (what the fast settle does inline, wrap_work.c,
 * without lanes in force): 1 if it stays parked or went back, 0 if the
 * hold was not HELD. */
/* The park's two steps (the top): HELD -> PARKED, then the one look at
 * the word.  -1: the hold was not HELD (nothing done); 1: parked, and the
 * word lets it stay; 0: parked, the word shows more (cap_park_slow). */
__attribute__((always_inline)) static inline int hold_park(struct seg_sem *s, uint8_t *hold)
{
	if (!hold_finish(hold, HOLD_HELD, HOLD_PARKED))
		return -1;
	return sem_park_ok(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST));
}

static inline int cap_park(struct segment *seg, struct seg_cap *cap, uint8_t *hold)
{
	int p = hold_park(&cap->sems[SEM_ACTIVE], hold);
	if (p < 0)
		return 0;
	if (!p && !cap_park_slow(seg, cap, hold)
	    && sem_release(&cap->sems[SEM_ACTIVE], hold) == SEM_RELEASE_SLOW)
		cap_release_slow(seg, cap, SEM_ACTIVE, hold);
	return 1;
}

/* Give a PARKED hold back as a sweep does (its owner closes, or its thread
 * exits); waits for a sweep in progress (SWEEPING).  The hold is NONE
 * after, unless its owner took it back meanwhile (HELD: 0 returned). */
int cap_unpark_release(struct segment *seg, struct seg_cap *cap, uint8_t *hold);

/* Set a semaphore's cap and admit waiters the new cap has room for. */
void cap_set_max(struct segment *seg, struct seg_cap *cap, int sem, uint32_t max);

/* Close (no slot granted, whatever max says: max = 0 means "no cap") or
 * open a semaphore again, admitting waiters (scope = cluster, lease.c).
 * Closing wakes every waiter: its cap_wait_on answers CAP_WAITING at once,
 * so that its caller can give up (the coordinator lost, fail-closed). */
void cap_set_closed(struct segment *seg, struct seg_cap *cap, int sem, int closed);

/* The lanes' operations: cap_lanes.h. */

/* Rebuild every count from the live holders (after processes died). */
void cap_audit(struct segment *seg);

/* Reap the records of dead processes (seg_reap) and, if any were, have the
 * counts rebuilt: now if the mutex is free by `deadline_ns` (cap_now_ns();
 * 0: wait for it), else by the next holder of the mutex.  How many. */
int cap_reap(struct segment *seg, uint64_t deadline_ns);

/* seg_release_pid (the records of this pid from before an exec), then the
 * same recount. */
int cap_release_pid(struct segment *seg, int pid);

/* Wall-clock-free time for waits. */
uint64_t cap_now_ns(void);

#endif
