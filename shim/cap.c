/*
 * cap.c - the slow paths of the cap: waiting in line, handing a slot over,
 * changing a cap, and rebuilding the counts after a crash (see cap.h).
 *
 * Everything that changes the queue runs under the cap's robust mutex, and
 * nothing that holds the mutex ever waits for anything but memory: the
 * audit decides half-done holds at once (cap.h), so a thread blocked on the
 * mutex never holds up the one that has it.  A waiter queues an entry with
 * a ticket and sleeps on the entry's futex word in slices of at most
 * CAP_SLICE_NS; between slices it reaps dead processes, so a slot held by a
 * process killed with SIGKILL comes back within a slice.  A releaser that
 * finds waiters does not decrement the count: it marks the oldest waiter
 * GRANTED (the slot passes directly, so nobody can barge in) and wakes it,
 * unless it is spinning awake for it (the head of a cap whose releases can
 * be foretold: cap_spin.h).
 *
 * Every wait is bounded by the waiter's deadline, the mutex included: a
 * waiter whose deadline passes takes itself out of line with one CAS on its
 * entry (QUEUED -> CANCELLED), without the mutex, and returns CAP_TIMEOUT;
 * the next holder of the mutex sweeps the entry.  A waiter that was granted
 * the slot before its deadline keeps it.
 *
 * The lanes' admission and queue are cap_lanes.c's; cap_int.h is what the
 * two files lend each other.
 */
#include "cap_int.h"
#include "cap_lock.h"
#include "segment.h"
#include "procid.h"
#include "clock.h"
#include "policy.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t cap_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

void cap_init_private(struct seg_cap *cap)
{
	memset(cap, 0, sizeof *cap);
	pthread_mutex_init(&cap->lock, NULL);
	/* a private cap never parks (nobody would sweep it; the shim's settle
	 * does not try: hot.no_park): SEM_SWEPT set for good sends any parker
	 * to cap_park_slow, which gives the slot back */
	cap->sems[SEM_ACTIVE].word = SEM_SWEPT;
}

void futex_wait(uint32_t *addr, uint32_t seen, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	syscall(SYS_futex, addr, FUTEX_WAIT, seen, &ts, NULL, 0);
}

/*
 * Waking a waiter (always under the lock) bumps its futex word at once but
 * makes the system call only once the lock is let go (cap_unlock): a
 * waiter woken while its waker still holds the lock would block on the
 * lock at once (it takes its granted slot under it) and sleep a second
 * time.  Each wake wakes exactly one waiter, the one granted.  A waiter
 * that looks before the call sees the bumped word or GRANTED and does not
 * sleep; a thread that dies holding the lock leaves its granted waiters to
 * notice at their next slice.
 */
#define WAKES_LATER 8
static __thread uint32_t *wakes_later[WAKES_LATER];
static __thread int wakes_pending;

static void futex_wake_now(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}

void futex_wake(uint32_t *addr)
{
	__atomic_fetch_add(addr, 1, __ATOMIC_RELEASE);
	if (wakes_pending < WAKES_LATER)
		wakes_later[wakes_pending++] = addr;
	else
		futex_wake_now(addr);
}

static void sweep_locked(struct seg_cap *cap);

/* Lock, by deadline_ns (cap_now_ns(); 0: cap_lock.h's fixed bound): 0, or ETIMEDOUT (or
 * another error).  If the last holder died inside, the state may be
 * half-changed: rebuild it from the holders before going on; likewise if a
 * reaper left a recount due. */
int cap_lock(struct segment *seg, struct seg_cap *cap, uint64_t deadline_ns)
{
	int r = cap_mutex_lock(&cap->lock, deadline_ns);   /* 0: a short fixed bound */
	if (r == EOWNERDEAD) {
		if (seg)
			audit_locked(seg, cap);
		pthread_mutex_consistent(&cap->lock);
		r = 0;
	}
	if (r != 0)
		return r;
	if (seg && __atomic_exchange_n(&cap->audit_due, 0, __ATOMIC_ACQ_REL))
		audit_locked(seg, cap);
	sweep_locked(cap);
	return 0;
}

/* Sweep on the way out too: a waiter that gave up while we held the lock
 * is then out of the count as soon as the lock is free. */
void cap_unlock(struct seg_cap *cap)
{
	sweep_locked(cap);
	pthread_mutex_unlock(&cap->lock);
	for (int i = 0; i < wakes_pending; i++)
		futex_wake_now(wakes_later[i]);
	wakes_pending = 0;
}

void cap_drop_hold(struct seg_cap *cap, uint8_t *hold)
{
	__atomic_store_n(hold, HOLD_NONE, __ATOMIC_SEQ_CST);
	__atomic_store_n(&cap->audit_due, 1, __ATOMIC_RELEASE);
}

void cap_abandon_grant(struct seg_cap *cap, uint32_t *state, uint8_t *hold)
{
	__atomic_store_n(state, WAITER_ABANDONED, __ATOMIC_RELEASE);
	cap_drop_hold(cap, hold);
}

static uint32_t waiter_state(struct seg_waiter *w)
{
	return __atomic_load_n(&w->state, __ATOMIC_ACQUIRE);
}

static struct seg_waiter *oldest_waiter(struct seg_cap *cap, int sem)
{
	struct seg_waiter *best = NULL;
	for (int i = 0; i < (int)cap->waiters_hi; i++) {
		struct seg_waiter *w = &cap->waiters[i];
		if (waiter_state(w) == WAITER_QUEUED && w->sem == (uint32_t)sem
		    && !w->granted_ms       /* revoked, its owner stopped: passed by */
		    && (!best || w->ticket < best->ticket))
			best = w;
	}
	return best;
}

void word_add(struct seg_sem *s, int64_t delta)
{
	__atomic_fetch_add(&s->word, (uint64_t)delta, __ATOMIC_SEQ_CST);
}

/* Entries whose waiters gave up at their deadline: out of the count. */
static void sweep_locked(struct seg_cap *cap)
{
	int any = 0;
	lanes_sweep_locked(cap);
	for (int k = 0; k < CAP_SEMS; k++)   /* the lanes' waiters count in SEM_ACTIVE's too */
		any |= sem_waiting(__atomic_load_n(&cap->sems[k].word, __ATOMIC_RELAXED))
		       > (k == SEM_ACTIVE ? cap->lanes.nwaiting : 0);
	/* nobody gave up since the last sweep: nothing to look for */
	if (!any || !__atomic_load_n(&cap->sweep_due, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&cap->sweep_due, 0, __ATOMIC_SEQ_CST);
	for (int i = 0; i < (int)cap->waiters_hi; i++) {
		struct seg_waiter *w = &cap->waiters[i];
		if (waiter_state(w) == WAITER_CANCELLED && w->sem < CAP_SEMS) {
			word_add(&cap->sems[w->sem], -(int64_t)SEM_WAIT_ONE);
			__atomic_store_n(&w->state, WAITER_FREE, __ATOMIC_RELEASE);
		}
	}
}

/* Hand a slot to the head waiter: 1, or 0 if nobody (still) waits.  The
 * caller has made room in the count, or hands its own slot over (`own`:
 * the count stays). */
static int grant_head_locked(struct seg_cap *cap, int sem, int own)
{
	struct seg_sem *s = &cap->sems[sem];
	struct seg_waiter *head;
	while ((head = oldest_waiter(cap, sem))) {
		uint32_t queued = WAITER_QUEUED;
		if (__atomic_compare_exchange_n(&head->state, &queued, WAITER_GRANTED, 0,
		                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			/* The slot is the waiter's now: counted, and no longer waiting. */
			__atomic_store_n(&head->granted_ms, cap_ms_stamp(), __ATOMIC_RELAXED);
			word_add(s, (own ? 0 : 1) - (int64_t)SEM_WAIT_ONE);
			if (sem == SEM_ACTIVE)
				cap_spin_granted_locked(&cap->spin, head->ticket);
			/* awake already (spinning): the bumped word is enough */
			if (sem == SEM_ACTIVE && cap_spin_is_spinning(&cap->spin, (int)(head - cap->waiters)))
				__atomic_fetch_add(&head->futex, 1, __ATOMIC_RELEASE);
			else
				futex_wake(&head->futex);
			return 1;
		}
		/* it gave up just now: sweep it and look again */
		if (queued == WAITER_CANCELLED) {
			word_add(s, -(int64_t)SEM_WAIT_ONE);
			__atomic_store_n(&head->state, WAITER_FREE, __ATOMIC_RELEASE);
		}
	}
	return 0;
}

/* Admit queued waiters, oldest first, while the cap has room. */
void admit_locked(struct seg_cap *cap, int sem)
{
	struct seg_sem *s = &cap->sems[sem];
	for (;;) {
		uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
		uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
		if (sem_waiting(w) == 0 || (max && sem_count(w) >= max) || (w & SEM_CLOSED))
			return;
		if (!grant_head_locked(cap, sem, 0))
			return;
	}
}

void record_wait(struct seg_sem *s, struct seg_proc *p, uint64_t ns, int timed_out)
{
	seg_add(&s->waits, 1);
	seg_add(&s->wait_ns_sum, ns);
	seg_add(&s->hist[cap_bucket(ns)], 1);
	if (timed_out)
		seg_add(&s->timeouts, 1);
	if (p) {
		seg_add(&p->waits, 1);
		seg_add(&p->wait_ns, ns);
		if (timed_out)
			seg_add(&p->timeouts, 1);
	}
}

/* A granted waiter takes its slot (under the lock: an audit counts either
 * the GRANTED entry or the HELD hold, never both or neither). */
static void take_granted_locked(struct seg_sem *s, struct seg_waiter *me, uint8_t *hold)
{
	__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
	__atomic_store_n(&me->state, WAITER_FREE, __ATOMIC_RELEASE);
	seg_add(&s->acquired, 1);
}

enum cap_result cap_wait_begin(struct cap_wait *wt, struct segment *seg, struct seg_cap *cap,
                               int sem, uint8_t *hold, uint32_t proc, int tid,
                               uint64_t timeout_ns, int holds_other)
{
	struct seg_sem *s = &cap->sems[sem];
	memset(wt, 0, sizeof *wt);
	wt->seg = seg;
	wt->cap = cap;
	wt->s = s;
	wt->p = seg && proc < seg->max_procs ? &seg->procs[proc] : NULL;
	wt->hold = hold;
	wt->start = cap_now_ns();
	wt->deadline = wt->start + (timeout_ns ? timeout_ns : 1);
	wt->next_look = wt->start + CAP_SLICE_NS;

	int lr = cap_lock(seg, cap, wt->deadline);
	if (lr == ETIMEDOUT) {
		wt->waited_ns = cap_now_ns() - wt->start;
		record_wait(s, wt->p, wt->waited_ns, 1);
		return CAP_TIMEOUT;
	}
	if (lr != 0)
		return CAP_ERROR;
	admit_locked(cap, sem);          /* a raised cap may have room for the queue */
	uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
	if (!(w & SEM_SWEPT) && sem == SEM_ACTIVE && max && sem_count(w) >= max) {
		/* idle connections' parked slots make the room (cap.h) */
		cap_sweep_parked_locked(seg, cap, 0);
		w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	}
	if (sem_waiting(w) == 0 && (max == 0 || sem_count(w) < max) && !(w & SEM_CLOSED)) {
		word_add(s, 1);          /* the word is not frozen: audits hold the lock */
		__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
		seg_add(&s->acquired, 1);
		cap_unlock(cap);
		return CAP_OK;
	}
	if (holds_other) {
		cap_unlock(cap);
		return CAP_NESTED;   /* the caller shares or refuses, and counts */
	}
	struct seg_waiter *me = NULL;
	for (int i = 0; i < SEG_MAX_WAITERS && !me; i++)
		if (waiter_state(&cap->waiters[i]) == WAITER_FREE)
			me = &cap->waiters[i];
	if (!me) {                       /* more waiters than entries: fail, don't hang */
		cap_unlock(cap);
		return CAP_ERROR;
	}
	if ((uint32_t)(me - cap->waiters) >= cap->waiters_hi)
		cap->waiters_hi = (uint32_t)(me - cap->waiters) + 1;
	me->ticket = cap->next_ticket++;
	me->sem = (uint32_t)sem;
	me->proc = proc;
	me->pid = getpid();
	me->tid = tid;
	me->conn = -1;
	me->granted_ms = 0;
	me->since_ns = clock_ns(CLOCK_REALTIME);
	__atomic_store_n(&me->state, WAITER_QUEUED, __ATOMIC_RELEASE);
	__atomic_store_n(hold, HOLD_WAITING, __ATOMIC_RELEASE);
	word_add(s, (int64_t)SEM_WAIT_ONE);
	/* In the word now: a slot parked from now on sees us and comes back
	 * the normal way; one parked before is swept here (cap.h). */
	if (sem == SEM_ACTIVE)
		cap_sweep_parked_locked(seg, cap, 0);
	cap_unlock(cap);
	wt->me = me;
	return CAP_WAITING;
}

/* One slice of the wait, or its end. */
static enum cap_result wait_slice(struct cap_wait *wt)
{
	struct seg_waiter *me = wt->me;
	uint8_t *hold = wt->hold;
	for (;;) {
		uint32_t seen = __atomic_load_n(&me->futex, __ATOMIC_ACQUIRE);
		uint32_t st = waiter_state(me);
		if (st == WAITER_GRANTED) {
			/* Granted before our deadline: the slot is ours; the lock
			 * is only ever held for a moment (nobody waits under it). */
			if (cap_lock(wt->seg, wt->cap, 0) != 0) {
				cap_abandon_grant(wt->cap, &me->state, hold);
				return CAP_TIMEOUT;
			}
			if (waiter_state(me) != WAITER_GRANTED) {   /* revoked meanwhile */
				cap_unlock(wt->cap);
				continue;
			}
			take_granted_locked(wt->s, me, hold);
			cap_unlock(wt->cap);
			return CAP_OK;
		}
		if (st != WAITER_QUEUED) {       /* an audit dropped us (our process record is gone) */
			__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
			return CAP_ERROR;
		}
		uint64_t now = cap_now_ns();
		if (now >= wt->deadline) {
			uint32_t queued = WAITER_QUEUED;
			if (__atomic_compare_exchange_n(&me->state, &queued, WAITER_CANCELLED, 0,
			                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				__atomic_store_n(&wt->cap->sweep_due, 1, __ATOMIC_SEQ_CST);
				__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
				/* Out of the count now if the lock is free, else
				 * when its holder lets it go (cap_unlock). */
				if (cap_lock(wt->seg, wt->cap, 1) == 0)
					cap_unlock(wt->cap);
				return CAP_TIMEOUT;
			}
			continue;               /* granted (or dropped) at this very moment */
		}
		if (__atomic_load_n(&me->granted_ms, __ATOMIC_RELAXED)
		    && cap_revoked_resume(wt) == 0)
			continue;               /* revoked while we were stopped: in line again */
		if (now >= wt->next_look) {
			/* Still in line after a slice: make sure no dead process holds
			 * what we wait for, and let the caller look around. */
			if (wt->seg)
				cap_reap(wt->seg, wt->deadline);
			/* a release that found the lock held left its slot to
			 * the next audit (cap_drop_hold): run it */
			if (__atomic_load_n(&wt->cap->audit_due, __ATOMIC_ACQUIRE)
			    && cap_lock(wt->seg, wt->cap, wt->deadline) == 0)
				cap_unlock(wt->cap);
			cap_revoke_stopped(wt);
			wt->next_look = cap_now_ns() + CAP_SLICE_NS;
			return CAP_WAITING;
		}
		uint64_t until = wt->deadline < wt->next_look ? wt->deadline : wt->next_look;
		uint32_t max = wt->s == &wt->cap->sems[SEM_ACTIVE]
		               ? __atomic_load_n(&wt->s->max, __ATOMIC_RELAXED) : 0;
		if (!cap_spin_wait(wt->cap, me, max, seen, now, until))
			futex_wait(&me->futex, seen, until - now);
		/* Closed under us (scope = cluster: the coordinator lost): the
		 * caller decides whether to go on waiting (cap_set_closed). */
		if (__atomic_load_n(&me->futex, __ATOMIC_ACQUIRE) != seen
		    && waiter_state(me) == WAITER_QUEUED
		    && (__atomic_load_n(&wt->s->word, __ATOMIC_ACQUIRE) & SEM_CLOSED))
			return CAP_WAITING;
	}
}

enum cap_result cap_wait_on(struct cap_wait *wt)
{
	enum cap_result r = wait_slice(wt);
	if (r != CAP_WAITING) {
		wt->waited_ns = cap_now_ns() - wt->start;
		record_wait(wt->s, wt->p, wt->waited_ns, r != CAP_OK);
	}
	return r;
}

enum cap_result cap_acquire_slow(struct segment *seg, struct seg_cap *cap, int sem,
                                 uint8_t *hold, uint32_t proc, int tid,
                                 uint64_t timeout_ns, int holds_other,
                                 uint64_t *waited_ns)
{
	struct cap_wait w;
	enum cap_result r = cap_wait_begin(&w, seg, cap, sem, hold, proc, tid, timeout_ns,
	                                   holds_other);
	while (r == CAP_WAITING)
		r = cap_wait_on(&w);
	*waited_ns = w.waited_ns;
	return r;
}

/* A counted slot goes back (the lock held): handed to the head waiter (the
 * count stays, one waiter fewer), unless the count is above a lowered
 * cap; else counted down. */
void give_back_locked(struct seg_cap *cap, int sem)
{
	struct seg_sem *s = &cap->sems[sem];
	uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
	int handed = sem_waiting(w) && (max == 0 || sem_count(w) <= max) && !(w & SEM_CLOSED)
	             && grant_head_locked(cap, sem, 1);
	if (!handed && sem_count(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST)) > 0)
		word_add(s, -1);
}

void cap_release_slow(struct segment *seg, struct seg_cap *cap, int sem, uint8_t *hold)
{
	/* The lock is only held for moments; if its holder is stopped, the
	 * next holder's audit gives the slot back (cap_drop_hold). */
	if (cap_lock(seg, cap, 0) != 0) {
		cap_drop_hold(cap, hold);
		return;
	}
	/* a holder's release with waiters: its hold feeds the head's
	 * prediction (cap_spin.h; a sweep's give-back of a parked slot does
	 * not: that hold ended when it parked) */
	if (sem == SEM_ACTIVE && sem_waiting(__atomic_load_n(&cap->sems[sem].word, __ATOMIC_SEQ_CST)))
		cap_spin_released_locked(&cap->spin, __atomic_load_n(&cap->sems[sem].max,
		                                                     __ATOMIC_RELAXED));
	give_back_locked(cap, sem);
	__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
	cap_unlock(cap);
}

int cap_hand_over(struct segment *seg, struct seg_cap *cap, uint8_t *from, uint8_t *to)
{
	if (cap_lock(seg, cap, 0) != 0)
		return 0;
	/* Under the lock no audit runs: it never sees both holds, or neither. */
	uint8_t shared = HOLD_SHARED;
	/* `to` may end its share at this very moment (hold_unshare, shim.h):
	 * whichever CAS comes first wins. */
	int done = __atomic_load_n(from, __ATOMIC_ACQUIRE) == HOLD_HELD
	           && __atomic_compare_exchange_n(to, &shared, HOLD_HELD, 0, __ATOMIC_ACQ_REL,
	                                          __ATOMIC_ACQUIRE);
	if (done)
		__atomic_store_n(from, HOLD_NONE, __ATOMIC_RELEASE);
	cap_unlock(cap);
	return done;
}

void cap_set_max(struct segment *seg, struct seg_cap *cap, int sem, uint32_t max)
{
	if (max > SEM_COUNT_MASK - 1)   /* the fast paths rely on it (the policy's limit is 10^6) */
		max = SEM_COUNT_MASK - 1;
	uint32_t old = __atomic_load_n(&cap->sems[sem].max, __ATOMIC_RELAXED);
	if (old == max)
		return;
	if (cap_lock(seg, cap, 0) != 0) {
		/* in force now; the next holder's audit admits by it, and every
		 * parker from now on looks at the count (SEM_SWEPT: cap.h) */
		__atomic_store_n(&cap->sems[sem].max, max, __ATOMIC_SEQ_CST);
		if (sem == SEM_ACTIVE)
			__atomic_fetch_or(&cap->sems[sem].word, SEM_SWEPT, __ATOMIC_SEQ_CST);
		__atomic_store_n(&cap->audit_due, 1, __ATOMIC_RELEASE);
		return;
	}
	/* the max in force now (another process may have changed it while we
	 * waited for the lock) */
	old = __atomic_load_n(&cap->sems[sem].max, __ATOMIC_RELAXED);
	__atomic_store_n(&cap->sems[sem].max, max, __ATOMIC_SEQ_CST);
	if (sem == SEM_ACTIVE && (max == 0 || max < old))
		cap_sweep_parked_locked(seg, cap, 1);   /* parked slots obey the new cap */
	admit_locked(cap, sem);          /* a lower cap admits nobody until below it */
	if (sem == SEM_ACTIVE)
		lanes_admit_locked(cap);     /* scope = cluster: the lease grew */
	cap_unlock(cap);
}

void cap_set_closed(struct segment *seg, struct seg_cap *cap, int sem, int closed)
{
	struct seg_sem *s = &cap->sems[sem];
	if (!!(__atomic_load_n(&s->word, __ATOMIC_RELAXED) & SEM_CLOSED) == !!closed)
		return;
	if (cap_lock(seg, cap, 0) != 0)
		return;
	/* Under the lock: no slow-path grant is between its check and its add;
	 * the fast path's CAS fails on the changed word. */
	if (closed) {
		__atomic_fetch_or(&s->word, SEM_CLOSED, __ATOMIC_SEQ_CST);
		/* Every waiter looks at once (it may have to give up now). */
		for (int i = 0; i < SEG_MAX_WAITERS; i++)
			if (waiter_state(&cap->waiters[i]) == WAITER_QUEUED
			    && cap->waiters[i].sem == (uint32_t)sem)
				futex_wake(&cap->waiters[i].futex);
		for (int i = 0; sem == SEM_ACTIVE && cap->lanes.nwaiting && i < CAP_LANE_WAITERS; i++)
			if (__atomic_load_n(&cap->lanes.waiters[i].state, __ATOMIC_ACQUIRE) == WAITER_QUEUED)
				futex_wake(&cap->lanes.waiters[i].futex);   /* the lanes' too */
	} else {
		__atomic_fetch_and(&s->word, ~SEM_CLOSED, __ATOMIC_SEQ_CST);
	}
	admit_locked(cap, sem);
	if (sem == SEM_ACTIVE)
		lanes_admit_locked(cap);
	cap_unlock(cap);
}

/* ---- the audit ---------------------------------------------------------- */

int proc_is_live(struct segment *seg, uint32_t idx, int32_t pid, signed char *cache)
{
	if (idx >= seg->max_procs)
		return 0;
	if (cache[idx] == 0) {
		struct seg_proc *p = &seg->procs[idx];
		int live = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == SLOT_LIVE
		           && seg_proc_alive(seg, idx);
		cache[idx] = live ? 1 : -1;
	}
	return cache[idx] > 0 && seg->procs[idx].pid == pid;
}

/* Does a live hold count?  Half-done ones are decided now (cap.h): an
 * acquire not yet confirmed does not count (and will know it), a release
 * not yet confirmed does (and its releaser gives it back under the lock).
 * Only the owner moves a hold without the lock, each move at most once
 * more here: the loop ends. */
static int hold_counts(uint8_t *hold)
{
	for (;;) {
		uint8_t h = __atomic_load_n(hold, __ATOMIC_SEQ_CST), to;
		switch (h) {
		case HOLD_HELD:
		case HOLD_PARKED:
		case HOLD_RELEASING_COUNTED:
			return 1;
		case HOLD_SWEEPING:      /* its sweeper died holding the lock */
			to = HOLD_NONE;
			break;
		case HOLD_RELEASING:
			to = HOLD_RELEASING_COUNTED;
			break;
		case HOLD_ACQUIRING:
			to = HOLD_NONE;
			break;
		default:
			return 0;
		}
		if (__atomic_compare_exchange_n(hold, &h, to, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return to == HOLD_RELEASING_COUNTED;
	}
}

/*
 * Freeze every semaphore word (fast paths then fall to the lock, which we
 * hold, or fail their CAS), count the live holders and waiters, and thaw
 * with the true counts in the next epoch.  Waits for nobody.
 */
void audit_locked(struct segment *seg, struct seg_cap *cap)
{
	static signed char live[SEG_PROCS_LIMIT];   /* under the lock */
	uint32_t held[CAP_SEMS] = { 0 }, waiting[CAP_SEMS] = { 0 };
	uint64_t epoch[CAP_SEMS], swept = SEM_SWEPT;

	for (int k = 0; k < CAP_SEMS; k++)
		epoch[k] = sem_epoch(__atomic_fetch_or(&cap->sems[k].word, SEM_FROZEN,
		                                       __ATOMIC_SEQ_CST));
	lanes_freeze_locked(cap);
	memset(live, 0, seg->max_procs);

	for (uint32_t i = 0; i < seg->max_conns; i++) {
		struct seg_conn *c = &seg->conns[i];
		uint32_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
		if (st != SLOT_LIVE && st != SLOT_CLAIMED)
			continue;
		if (!proc_is_live(seg, c->proc, c->pid, live)) {
			/* not counted from now on: no sweep may count it down */
			uint8_t was = HOLD_PARKED;
			__atomic_compare_exchange_n(&c->hold[SEM_ACTIVE], &was, HOLD_NONE, 0,
			                            __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
			continue;
		}
		for (int k = 0; k < CAP_SEMS; k++)
			held[k] += (uint32_t)hold_counts(&c->hold[k]);
		if (__atomic_load_n(&c->hold[SEM_ACTIVE], __ATOMIC_SEQ_CST) == HOLD_PARKED)
			swept = 0;
	}
	for (int i = 0; i < SEG_MAX_WAITERS; i++) {
		struct seg_waiter *w = &cap->waiters[i];
		uint32_t st = waiter_state(w);
		if (st == WAITER_FREE || w->sem >= CAP_SEMS)
			continue;
		if (st == WAITER_CANCELLED || st == WAITER_ABANDONED
		    || !proc_is_live(seg, w->proc, w->pid, live)) {
			/* gave up, or dead, granted or not (a live waiter's CAS to
			 * CANCELLED may race this: either way it is out of line) */
			__atomic_store_n(&w->state, WAITER_FREE, __ATOMIC_RELEASE);
			continue;
		}
		if (st == WAITER_GRANTED)
			held[w->sem]++;
		else
			waiting[w->sem]++;
	}
	held[SEM_ACTIVE] += lanes_audit_locked(seg, cap, live, &waiting[SEM_ACTIVE]);
	for (int k = 0; k < CAP_SEMS; k++) {
		uint64_t flags = __atomic_load_n(&cap->sems[k].word, __ATOMIC_SEQ_CST)
		                 & (SEM_CLOSED | SEM_LANES | SEM_EXCL);
		__atomic_store_n(&cap->sems[k].word,
		                 (uint64_t)held[k] | ((uint64_t)waiting[k] << SEM_WAIT_SHIFT) | flags
		                 | (k == SEM_ACTIVE ? swept : 0)
		                 | (((epoch[k] + 1) << SEM_EPOCH_SHIFT) & ~SEM_STATE_MASK),
		                 __ATOMIC_SEQ_CST);
		admit_locked(cap, k);
	}
	/* a change whose sweep did not get the lock (cap_set_max,
	 * cap_sweep_parked): parked slots obey it now */
	if (!swept && !cap_parking_allowed(cap, __atomic_load_n(&cap->sems[SEM_ACTIVE].word,
	                                                        __ATOMIC_SEQ_CST),
	                                   __atomic_load_n(&cap->sems[SEM_ACTIVE].max,
	                                                   __ATOMIC_RELAXED)))
		cap_sweep_parked_locked(seg, cap, 1);
	lanes_admit_locked(cap);
}

void cap_audit(struct segment *seg)
{
	if (!seg || !seg->hdr)
		return;
	if (cap_lock(seg, &seg->hdr->cap, 0) != 0)
		return;
	audit_locked(seg, &seg->hdr->cap);
	cap_unlock(&seg->hdr->cap);
}

/* Records were freed: recount now if the lock comes by the deadline, else
 * the next holder of the lock will (audit_due). */
static void recount(struct segment *seg, uint64_t deadline_ns)
{
	struct seg_cap *cap = &seg->hdr->cap;
	__atomic_store_n(&cap->audit_due, 1, __ATOMIC_RELEASE);
	if (cap_lock(seg, cap, deadline_ns) == 0)   /* audits: audit_due */
		cap_unlock(cap);
}

int cap_reap(struct segment *seg, uint64_t deadline_ns)
{
	if (!seg || !seg->hdr)
		return 0;
	int n = seg_reap(seg);
	if (n)
		recount(seg, deadline_ns);
	return n;
}

int cap_release_pid(struct segment *seg, int pid)
{
	if (!seg || !seg->hdr)
		return 0;
	int n = seg_release_pid(seg, (pid_t)pid);
	if (n)
		recount(seg, 0);
	return n;
}

