/*
 * cap_lanes.c - the lanes' slow paths (cap_lanes.h): admission under the
 * cap's lock when the one-CAS fast paths cannot (a lane or the cap full,
 * someone queued, an exclusive lane waiting or running), the lanes' queue
 * in priority order, the release that hands slots on, and this queue's side
 * of taking back a stopped waiter's grant (cap_revoke.c).  The lanes' part
 * of the audit and putting a policy's lanes in force: cap_lanes_table.c.
 *
 * Under the lock fast paths still run, so every change of a count here is
 * an atomic operation on its word, and admission takes the lane word and
 * the global word each by CAS, as a fast path does (a fast acquirer's
 * lane reservation may be in flight; it gives it back and comes to the
 * lock, which admits whoever it held back).
 */
#include "cap_int.h"
#include "cap_lanes.h"
#include "clock.h"
#include "policy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* In line to be admitted: QUEUED and not revoked (cap_revoke.c: its owner
 * was stopped when granted; passed by until it runs again). */
static int lane_in_line(struct seg_lane_waiter *w)
{
	return lane_waiter_state(w) == WAITER_QUEUED && !w->granted_ms;
}

/* Counted in excl_waiting (SEM_EXCL): an exclusive waiter, unless revoked
 * (a stopped one holds nobody back). */
static int lane_excl_waits(const struct seg_lane_waiter *w)
{
	return w->exclusive && !w->granted_ms;
}

/* One slice of a waiter's sleep (as cap_acquire_slow's) until deadline. */
static void sleep_unless_granted(uint32_t *futex, uint32_t *state, uint64_t deadline)
{
	uint32_t seen = __atomic_load_n(futex, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(state, __ATOMIC_ACQUIRE) == WAITER_GRANTED)
		return;
	uint64_t now = cap_now_ns(), left = deadline > now ? deadline - now : 0;
	if (left)
		futex_wait(futex, seen, left < CAP_SLICE_NS ? left : CAP_SLICE_NS);
}

static uint32_t lane_count(struct seg_cap *cap, unsigned lane)
{
	return lw_count(__atomic_load_n(&cap->lanes.lane[lane].word, __ATOMIC_SEQ_CST));
}

/* SEM_EXCL mirrors "an exclusive lane waits or runs" (cap_lanes.h). */
static void excl_sync_locked(struct seg_cap *cap)
{
	struct seg_lanes *L = &cap->lanes;
	uint64_t *word = &cap->sems[SEM_ACTIVE].word;
	if (L->excl_waiting || L->excl_active)
		__atomic_fetch_or(word, SEM_EXCL, __ATOMIC_SEQ_CST);
	else if (__atomic_load_n(word, __ATOMIC_SEQ_CST) & SEM_EXCL)
		__atomic_fetch_and(word, ~SEM_EXCL, __ATOMIC_SEQ_CST);
}

static int lane_room(struct seg_cap *cap, unsigned lane, int exclusive)
{
	struct seg_lanes *L = &cap->lanes;
	uint64_t w = __atomic_load_n(&cap->sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST);
	uint32_t max = __atomic_load_n(&cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED);
	uint32_t lmax = L->lane[lane].max;
	if (L->excl_active)
		return 0;
	if (exclusive)      /* scope = cluster: only while this host holds the gate */
		return sem_count(w) == 0 && L->gate != CAP_GATE_SHUT;
	if (L->excl_waiting || (max && sem_count(w) >= max) || (w & SEM_CLOSED)
	    || lmax == CAP_LANE_NONE)
		return 0;
	return !lmax || lane_count(cap, lane) < lmax;
}

/* One count up on a word, if it stays below `limit` (counts only). */
static int count_up(uint64_t *word, uint64_t limit, uint64_t set)
{
	uint64_t w = __atomic_load_n(word, __ATOMIC_SEQ_CST);
	do {
		if ((w & SEM_COUNT_MASK) >= limit)
			return 0;
	} while (!__atomic_compare_exchange_n(word, &w, (w + 1) | set, 1, __ATOMIC_SEQ_CST,
	                                      __ATOMIC_SEQ_CST));
	return 1;
}

/* One count down on a word, unless it is 0 already. */
static void count_down(uint64_t *word)
{
	uint64_t w = __atomic_load_n(word, __ATOMIC_SEQ_CST);
	while ((w & SEM_COUNT_MASK)
	       && !__atomic_compare_exchange_n(word, &w, w - 1, 1, __ATOMIC_SEQ_CST,
	                                       __ATOMIC_SEQ_CST))
		;
}

/* Take a slot in `lane` (after lane_room): its lane's count, then the
 * global one, each by CAS against the fast paths.  An exclusive one takes
 * the global count from 0 and sets SEM_EXCL in the same CAS: no fast path
 * lands beside it.  0 if a fast path took the room meanwhile. */
static int lane_take(struct seg_cap *cap, unsigned lane, int exclusive)
{
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	struct seg_lane *l = &cap->lanes.lane[lane];
	if (exclusive) {
		if (!count_up(&s->word, 1, SEM_EXCL))
			return 0;
		__atomic_fetch_add(&l->word, 1, __ATOMIC_SEQ_CST);
		cap->lanes.excl_active++;
		return 1;
	}
	uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
	if (!count_up(&l->word, l->max ? l->max : LW_COUNT_MASK, 0))
		return 0;
	if (!count_up(&s->word, max ? max : SEM_COUNT_MASK, 0)) {
		count_down(&l->word);
		return 0;
	}
	return 1;
}

/* A slot lane_take took, given back (its waiter gave up at this moment). */
static void lane_untake(struct seg_cap *cap, unsigned lane, int exclusive)
{
	count_down(&cap->lanes.lane[lane].word);
	count_down(&cap->sems[SEM_ACTIVE].word);
	if (exclusive && cap->lanes.excl_active)
		cap->lanes.excl_active--;
}

/* Is a served before b: higher priority, then the older ticket. */
static int lane_before(const struct seg_lane_waiter *a, const struct seg_lane_waiter *b)
{
	return !b || a->priority > b->priority || (a->priority == b->priority && a->ticket < b->ticket);
}

void lane_dequeue_counts(struct seg_lanes *L, const struct seg_lane_waiter *w)
{
	L->nwaiting--;
	L->lane[w->lane].waiting--;
	if (lane_excl_waits(w))
		L->excl_waiting--;
}

/* Out of line (under the lock): a QUEUED or CANCELLED entry is still in
 * the queue's counts, the global word's waiting field included. */
static void lane_unqueue(struct seg_cap *cap, struct seg_lane_waiter *w)
{
	uint32_t st = lane_waiter_state(w);
	if (st == WAITER_QUEUED || st == WAITER_CANCELLED) {
		lane_dequeue_counts(&cap->lanes, w);
		word_add(&cap->sems[SEM_ACTIVE], -(int64_t)SEM_WAIT_ONE);
	}
	__atomic_store_n(&w->state, WAITER_FREE, __ATOMIC_RELEASE);
}

void lanes_admit_locked(struct seg_cap *cap)
{
	struct seg_lanes *L = &cap->lanes;
	while (L->nwaiting) {
		struct seg_lane_waiter *best = NULL;
		for (int i = 0; i < CAP_LANE_WAITERS; i++) {
			struct seg_lane_waiter *w = &L->waiters[i];
			if (!lane_in_line(w) || (L->excl_waiting && !w->exclusive))
				continue;
			if (lane_before(w, best))
				best = w;
		}
		if (best && !best->exclusive && !lane_room(cap, best->lane, 0)) {
			/* its lane is full: the first that has room, in the same order */
			best = NULL;
			for (int i = 0; i < CAP_LANE_WAITERS; i++) {
				struct seg_lane_waiter *w = &L->waiters[i];
				if (lane_in_line(w) && !w->exclusive && lane_before(w, best)
				    && lane_room(cap, w->lane, 0))
					best = w;
			}
		}
		if (!best || !lane_room(cap, best->lane, (int)best->exclusive)
		    || !lane_take(cap, best->lane, (int)best->exclusive))
			break;
		uint32_t queued = WAITER_QUEUED;
		if (!__atomic_compare_exchange_n(&best->state, &queued, WAITER_GRANTED, 0,
		                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			/* it gave up at its deadline just now: out of line, look again */
			lane_untake(cap, best->lane, (int)best->exclusive);
			lane_unqueue(cap, best);
			continue;
		}
		/* counted (lane_take), no longer waiting */
		word_add(&cap->sems[SEM_ACTIVE], -(int64_t)SEM_WAIT_ONE);
		lane_dequeue_counts(L, best);
		__atomic_store_n(&best->granted_ms, cap_ms_stamp(), __ATOMIC_RELAXED);
		futex_wake(&best->futex);
	}
	excl_sync_locked(cap);
}

void lanes_sweep_locked(struct seg_cap *cap)
{
	struct seg_lanes *L = &cap->lanes;
	int excl = 0;
	if (!L->nwaiting)
		return;
	for (int i = 0; i < CAP_LANE_WAITERS; i++) {
		struct seg_lane_waiter *w = &L->waiters[i];
		if (lane_waiter_state(w) == WAITER_CANCELLED) {
			excl |= w->exclusive != 0;
			lane_unqueue(cap, w);
		}
	}
	if (excl)                /* an exclusive one held the others back */
		lanes_admit_locked(cap);
}

static void lane_record_wait(struct seg_cap *cap, unsigned lane, struct seg_proc *p, uint64_t ns,
                             int timed_out)
{
	struct seg_lane *l = &cap->lanes.lane[lane];
	record_wait(&cap->sems[SEM_ACTIVE], p, ns, timed_out);
	seg_add(&l->waits, 1);
	seg_add(&l->wait_ns_sum, ns);
	seg_add(&l->hist[cap_bucket(ns)], 1);
	if (timed_out)
		seg_add(&l->timeouts, 1);
}

unsigned cap_lane_find(const struct seg_cap *cap, const char *name)
{
	if (!name || !*name)
		return 0;
	for (unsigned i = 1; i <= cap->lanes.nlanes && i < CAP_LANES; i++)
		if (strcmp(cap->lanes.lane[i].name, name) == 0)
			return i;
	return 0;
}

enum cap_result cap_lane_acquire(struct segment *seg, struct seg_cap *cap, const char *lane,
                                 uint8_t *hold, uint8_t *lane_held, uint32_t proc, int tid,
                                 uint64_t timeout_ns, int holds_other, int try_only,
                                 uint64_t *waited_ns)
{
	return cap_lane_acquire_look(seg, cap, lane, hold, lane_held, proc, tid, timeout_ns,
	                             holds_other, try_only, waited_ns, NULL);
}

/* ---- a stopped waiter's grant taken back (cap_revoke.c) ------------------ */

static int lane_entry(const struct grant_queue *q, int i, struct grant_entry *e)
{
	struct seg_lane_waiter *w = &q->cap->lanes.waiters[i];
	grant_entry_of(e, &w->state, &w->granted_ms, &w->ticket, &w->pid, &w->tid);
	return 1;
}

/* In line again (first: fast paths see a waiter and keep off), its slot
 * given back, not in excl_waiting while revoked: an exclusive one so lets
 * every lane go on. */
static void lane_revoked_locked(const struct grant_queue *q, int i)
{
	struct seg_cap *cap = q->cap;
	struct seg_lane_waiter *w = &cap->lanes.waiters[i];
	word_add(&cap->sems[SEM_ACTIVE], (int64_t)SEM_WAIT_ONE);
	cap->lanes.nwaiting++;
	cap->lanes.lane[w->lane].waiting++;
	lane_untake(cap, w->lane, (int)w->exclusive);
	lanes_admit_locked(cap);         /* and SEM_EXCL as excl_* say */
}

static void lane_resumed_locked(const struct grant_queue *q, int i)
{
	struct seg_cap *cap = q->cap;
	if (cap->lanes.waiters[i].exclusive)
		cap->lanes.excl_waiting++;
	lanes_admit_locked(cap);
}

static struct grant_queue lane_queue(struct segment *seg, struct seg_cap *cap, uint64_t deadline)
{
	return (struct grant_queue){
		.seg = seg, .cap = cap, .deadline = deadline, .n = CAP_LANE_WAITERS,
		.entry = lane_entry, .revoked_locked = lane_revoked_locked,
		.resumed_locked = lane_resumed_locked,
	};
}

void cap_lanes_revoke_stopped(struct segment *seg, struct seg_cap *cap)
{
	struct grant_queue q = lane_queue(seg, cap, cap_now_ns() + CAP_SLICE_NS);
	grants_revoke_stopped(&q);
}

static void lane_held_set(uint8_t *lane_held, unsigned lane, int exclusive)
{
	__atomic_store_n(lane_held, (uint8_t)((lane + 1) | (exclusive ? LANE_HELD_EXCL : 0)),
	                 __ATOMIC_SEQ_CST);
}

enum cap_result cap_lane_acquire_look(struct segment *seg, struct seg_cap *cap,
                                      const char *name, uint8_t *hold, uint8_t *lane_held,
                                      uint32_t proc, int tid, uint64_t timeout_ns,
                                      int holds_other, int try_only, uint64_t *waited_ns,
                                      int (*look)(void))
{
	struct seg_lanes *L = &cap->lanes;
	struct seg_proc *p = seg && proc < seg->max_procs ? &seg->procs[proc] : NULL;
	uint64_t start = cap_now_ns(), deadline = start + (timeout_ns ? timeout_ns : 1);
	*waited_ns = 0;
	/* Every wait ends by its deadline, the lock's included (as cap_wait_begin). */
	int lr = cap_lock(seg, cap, try_only ? 0 : deadline);
	if (lr == ETIMEDOUT) {
		*waited_ns = cap_now_ns() - start;
		lane_record_wait(cap, cap_lane_find(cap, name), p, *waited_ns, 1);
		return CAP_TIMEOUT;
	}
	if (lr != 0)
		return CAP_ERROR;
	unsigned lane = cap_lane_find(cap, name);   /* the table in force, under the lock */
	int exclusive = L->lane[lane].exclusive != 0;
	lanes_admit_locked(cap);         /* a raised cap may have room for the queue */
	if (lane_room(cap, lane, exclusive) && lane_take(cap, lane, exclusive)) {
		lane_held_set(lane_held, lane, exclusive);
		__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
		excl_sync_locked(cap);
		seg_add(&cap->sems[SEM_ACTIVE].acquired, 1);
		seg_add(&L->lane[lane].acquired, 1);
		cap_unlock(cap);
		return CAP_OK;
	}
	if (try_only || holds_other) {
		cap_unlock(cap);
		return try_only ? CAP_BUSY : CAP_NESTED;
	}
	struct seg_lane_waiter *me = NULL;
	for (int i = 0; i < CAP_LANE_WAITERS && !me; i++)
		if (lane_waiter_state(&L->waiters[i]) == WAITER_FREE)
			me = &L->waiters[i];
	if (!me) {
		cap_unlock(cap);
		return CAP_ERROR;
	}
	me->ticket = L->next_ticket++;
	me->priority = L->lane[lane].priority;
	me->lane = lane;
	me->exclusive = (uint32_t)exclusive;
	me->proc = proc;
	me->pid = getpid();
	me->tid = tid;
	me->granted_ms = 0;
	me->since_ns = clock_ns(CLOCK_REALTIME);
	__atomic_store_n(&me->state, WAITER_QUEUED, __ATOMIC_RELEASE);
	L->nwaiting++;
	L->lane[lane].waiting++;
	if (exclusive)
		L->excl_waiting++;
	__atomic_store_n(hold, HOLD_WAITING, __ATOMIC_RELEASE);
	/* In line: from now on no fast path takes a slot (nor, for an
	 * exclusive waiter, any other lane's), and a release that made room
	 * just before (its lane CAS after our look) is seen here. */
	word_add(&cap->sems[SEM_ACTIVE], (int64_t)SEM_WAIT_ONE);
	excl_sync_locked(cap);
	lanes_admit_locked(cap);
	cap_unlock(cap);

	enum cap_result result = CAP_TIMEOUT;
	for (;;) {
		sleep_unless_granted(&me->futex, &me->state, deadline);
		uint32_t st = lane_waiter_state(me);
		if (st == WAITER_GRANTED) {
			/* Granted before the deadline: ours (the lock is only held
			 * for moments, nobody waits under it). */
			if (cap_lock(seg, cap, 0) != 0) {   /* its holder is stopped */
				cap_abandon_grant(cap, &me->state, hold);
				__atomic_store_n(lane_held, 0, __ATOMIC_RELEASE);
				break;           /* CAP_TIMEOUT */
			}
			if (lane_waiter_state(me) != WAITER_GRANTED) {   /* revoked meanwhile */
				cap_unlock(cap);
				continue;
			}
			lane_held_set(lane_held, me->lane, (int)me->exclusive);
			__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
			__atomic_store_n(&me->state, WAITER_FREE, __ATOMIC_RELEASE);
			seg_add(&cap->sems[SEM_ACTIVE].acquired, 1);
			seg_add(&L->lane[me->lane].acquired, 1);
			cap_unlock(cap);
			result = CAP_OK;
			break;
		}
		if (st != WAITER_QUEUED) {       /* an audit dropped us */
			__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
			result = CAP_ERROR;
			break;
		}
		if (cap_now_ns() >= deadline) {
			uint32_t queued = WAITER_QUEUED;
			if (__atomic_compare_exchange_n(&me->state, &queued, WAITER_CANCELLED, 0,
			                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
				/* out of line now if the lock is free, else when its
				 * holder lets it go (cap_unlock sweeps) */
				if (cap_lock(seg, cap, 1) == 0)
					cap_unlock(cap);
				break;
			}
			continue;                /* granted (or dropped) at this very moment */
		}
		struct grant_queue q = lane_queue(seg, cap, deadline);
		if (__atomic_load_n(&me->granted_ms, __ATOMIC_RELAXED)
		    && grant_resume(&q, (int)(me - L->waiters)) == 0)
			continue;        /* revoked while we were stopped: in line again */
		/* room made without a lane release (a reload), by the deadline */
		if (cap_lock(seg, cap, deadline) == 0) {
			lanes_admit_locked(cap);
			cap_unlock(cap);
		}
		grants_revoke_stopped(&q);   /* a stopped waiter's grant holds us up */
		if (seg && lane_waiter_state(me) == WAITER_QUEUED)
			cap_reap(seg, deadline);
		if (look && lane_waiter_state(me) == WAITER_QUEUED && look())
			deadline = cap_now_ns();     /* given up: out of line at the next turn */
	}
	*waited_ns = cap_now_ns() - start;
	lane_record_wait(cap, lane, p, *waited_ns, result != CAP_OK);
	return result;
}

void cap_lane_release(struct segment *seg, struct seg_cap *cap, uint8_t *hold,
                      uint8_t *lane_held)
{
	struct seg_lanes *L = &cap->lanes;
	if (cap_lock(seg, cap, 0) != 0) {   /* its holder is stopped: the next audit */
		__atomic_store_n(lane_held, 0, __ATOMIC_RELEASE);
		cap_drop_hold(cap, hold);
		return;
	}
	/* Under the lock no audit runs: the hold says what is still counted. */
	if (__atomic_load_n(hold, __ATOMIC_SEQ_CST) != HOLD_NONE) {
		unsigned held = __atomic_load_n(lane_held, __ATOMIC_SEQ_CST);
		unsigned lane = (held & ~LANE_HELD_EXCL) - 1;
		if (held && lane < CAP_LANES)
			count_down(&L->lane[lane].word);
		if ((held & LANE_HELD_EXCL) && L->excl_active)
			L->excl_active--;
		count_down(&cap->sems[SEM_ACTIVE].word);
		__atomic_store_n(lane_held, 0, __ATOMIC_RELAXED);
		__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
	}
	lanes_admit_locked(cap);
	/* waiters of before the lanes, if any (the word counts the lanes' too) */
	if (sem_waiting(__atomic_load_n(&cap->sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST)) > L->nwaiting)
		admit_locked(cap, SEM_ACTIVE);
	cap_unlock(cap);
}
