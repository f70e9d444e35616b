/*
 * cap.c - the slow paths of the cap: waiting in line, handing a slot over,
 * changing a cap, and rebuilding the counts after a crash (see cap.h).
 *
 * Everything here runs under the cap's robust mutex.  A waiter queues an
 * entry with a ticket and sleeps on the entry's futex word in slices of at
 * most CAP_SLICE_NS; between slices it reaps dead processes, so a slot
 * held by a process killed with SIGKILL comes back within a slice.  A
 * releaser that finds waiters does not decrement the count: it marks the
 * oldest waiter GRANTED (the slot passes directly, so nobody can barge in)
 * and wakes it.
 */
#include "cap.h"
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

#define CAP_SLICE_NS   (200 * 1000000ull)   /* a waiter looks around this often */

uint64_t cap_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

void cap_init_private(struct seg_cap *cap)
{
	memset(cap, 0, sizeof *cap);
	pthread_mutex_init(&cap->lock, NULL);
}

static void futex_wait(uint32_t *addr, uint32_t seen, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	syscall(SYS_futex, addr, FUTEX_WAIT, seen, &ts, NULL, 0);
}

static void futex_wake(uint32_t *addr)
{
	__atomic_fetch_add(addr, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void audit_locked(struct segment *seg, struct seg_cap *cap);
static uint32_t lanes_audit_locked(struct segment *seg, struct seg_cap *cap, signed char *live);
static void lanes_admit_locked(struct seg_cap *cap);

/* Lock; if the last holder died inside, the state may be half-changed:
 * rebuild it from the holders before going on. */
static int cap_lock(struct segment *seg, struct seg_cap *cap)
{
	int r = pthread_mutex_lock(&cap->lock);
	if (r == EOWNERDEAD) {
		if (seg)
			audit_locked(seg, cap);
		pthread_mutex_consistent(&cap->lock);
		r = 0;
	}
	return r;
}

static void cap_unlock(struct seg_cap *cap)
{
	pthread_mutex_unlock(&cap->lock);
}

static struct seg_waiter *oldest_waiter(struct seg_cap *cap, int sem)
{
	struct seg_waiter *best = NULL;
	for (int i = 0; i < SEG_MAX_WAITERS; i++) {
		struct seg_waiter *w = &cap->waiters[i];
		if (w->state == WAITER_QUEUED && w->sem == (uint32_t)sem
		    && (!best || w->ticket < best->ticket))
			best = w;
	}
	return best;
}

static void word_add(struct seg_sem *s, int64_t delta)
{
	__atomic_fetch_add(&s->word, (uint64_t)delta, __ATOMIC_SEQ_CST);
}

/* Admit queued waiters, oldest first, while the cap has room. */
static void admit_locked(struct seg_cap *cap, int sem)
{
	struct seg_sem *s = &cap->sems[sem];
	for (;;) {
		uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
		uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
		if (sem_waiting(w) == 0 || (max && sem_count(w) >= max) || (w & SEM_CLOSED))
			return;
		struct seg_waiter *head = oldest_waiter(cap, sem);
		if (!head)
			return;
		head->state = WAITER_GRANTED;
		/* The slot is the waiter's now: counted, and no longer waiting. */
		word_add(s, 1 - (int64_t)SEM_WAIT_ONE);
		futex_wake(&head->futex);
	}
}

static void record_wait(struct seg_sem *s, struct seg_proc *p, uint64_t ns, int timed_out)
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

enum cap_result cap_acquire_slow(struct segment *seg, struct seg_cap *cap, int sem,
                                 uint8_t *hold, uint32_t proc, int tid,
                                 uint64_t timeout_ns, int holds_other,
                                 uint64_t *waited_ns)
{
	struct seg_sem *s = &cap->sems[sem];
	struct seg_proc *p = seg && proc < seg->max_procs ? &seg->procs[proc] : NULL;
	uint64_t start = cap_now_ns();
	*waited_ns = 0;

	if (cap_lock(seg, cap) != 0)
		return CAP_ERROR;
	admit_locked(cap, sem);          /* a raised cap may have room for the queue */
	uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
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
		if (cap->waiters[i].state == WAITER_FREE)
			me = &cap->waiters[i];
	if (!me) {                       /* more waiters than entries: fail, don't hang */
		cap_unlock(cap);
		return CAP_ERROR;
	}
	me->ticket = cap->next_ticket++;
	me->sem = (uint32_t)sem;
	me->proc = proc;
	me->pid = getpid();
	me->tid = tid;
	me->conn = -1;
	me->since_ns = clock_ns(CLOCK_REALTIME);
	me->state = WAITER_QUEUED;
	__atomic_store_n(hold, HOLD_WAITING, __ATOMIC_RELEASE);
	word_add(s, (int64_t)SEM_WAIT_ONE);
	cap_unlock(cap);

	enum cap_result result = CAP_TIMEOUT;
	for (;;) {
		uint32_t seen = __atomic_load_n(&me->futex, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&me->state, __ATOMIC_ACQUIRE) != WAITER_GRANTED) {
			uint64_t now = cap_now_ns(), left = start + timeout_ns > now ? start + timeout_ns - now : 0;
			if (left)
				futex_wait(&me->futex, seen, left < CAP_SLICE_NS ? left : CAP_SLICE_NS);
		}
		if (cap_lock(seg, cap) != 0) {
			result = CAP_ERROR;
			break;
		}
		if (me->state == WAITER_GRANTED) {
			__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
			me->state = WAITER_FREE;
			seg_add(&s->acquired, 1);
			cap_unlock(cap);
			result = CAP_OK;
			break;
		}
		if (cap_now_ns() >= start + timeout_ns) {
			if (me->state == WAITER_QUEUED)   /* an audit may have dropped it */
				word_add(s, -(int64_t)SEM_WAIT_ONE);
			me->state = WAITER_FREE;
			__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
			cap_unlock(cap);
			break;
		}
		cap_unlock(cap);
		/* Still in line after a slice: make sure no dead process holds
		 * what we wait for (seg_reap audits when it finds one). */
		if (seg)
			seg_reap(seg);
	}
	*waited_ns = cap_now_ns() - start;
	record_wait(s, p, *waited_ns, result != CAP_OK);
	return result;
}

void cap_release_slow(struct segment *seg, struct seg_cap *cap, int sem, uint8_t *hold)
{
	struct seg_sem *s = &cap->sems[sem];
	if (cap_lock(seg, cap) != 0)
		return;
	uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	uint32_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
	struct seg_waiter *head = sem_waiting(w) ? oldest_waiter(cap, sem) : NULL;
	if (head && (max == 0 || sem_count(w) <= max) && !(w & SEM_CLOSED)) {
		/* Hand the slot over: the count stays, one waiter fewer. */
		head->state = WAITER_GRANTED;
		word_add(s, -(int64_t)SEM_WAIT_ONE);
		futex_wake(&head->futex);
	} else if (sem_count(w) > 0) {
		word_add(s, -1);
	}
	__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
	cap_unlock(cap);
}

int cap_hand_over(struct segment *seg, struct seg_cap *cap, uint8_t *from, uint8_t *to)
{
	if (cap_lock(seg, cap) != 0)
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
	if (__atomic_load_n(&cap->sems[sem].max, __ATOMIC_RELAXED) == max)
		return;
	if (cap_lock(seg, cap) != 0)
		return;
	__atomic_store_n(&cap->sems[sem].max, max, __ATOMIC_RELEASE);
	admit_locked(cap, sem);          /* a lower cap admits nobody until below it */
	cap_unlock(cap);
}

void cap_set_closed(struct segment *seg, struct seg_cap *cap, int sem, int closed)
{
	struct seg_sem *s = &cap->sems[sem];
	if (!!(__atomic_load_n(&s->word, __ATOMIC_RELAXED) & SEM_CLOSED) == !!closed)
		return;
	if (cap_lock(seg, cap) != 0)
		return;
	/* Under the lock: no slow-path grant is between its check and its add;
	 * the fast path's CAS fails on the changed word. */
	if (closed)
		__atomic_fetch_or(&s->word, SEM_CLOSED, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_and(&s->word, ~SEM_CLOSED, __ATOMIC_SEQ_CST);
	admit_locked(cap, sem);
	cap_unlock(cap);
}

/* ---- the audit ---------------------------------------------------------- */

static int proc_is_live(struct segment *seg, uint32_t idx, int32_t pid, signed char *cache)
{
	if (idx >= seg->max_procs)
		return 0;
	if (cache[idx] == 0) {
		struct seg_proc *p = &seg->procs[idx];
		int live = __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == SLOT_LIVE
		           && procid_alive(p->pid, p->starttime);
		cache[idx] = live ? 1 : -1;
	}
	return cache[idx] > 0 && seg->procs[idx].pid == pid;
}

/*
 * Freeze every semaphore word (fast paths then fall to the lock, which we
 * hold), let live processes finish the CAS they announced, count the live
 * holders and waiters, and thaw with the true counts.
 */
static void audit_locked(struct segment *seg, struct seg_cap *cap)
{
	static signed char live[SEG_PROCS_LIMIT];   /* under the lock */
	uint32_t held[CAP_SEMS] = { 0 }, waiting[CAP_SEMS] = { 0 };

	for (int k = 0; k < CAP_SEMS; k++)
		__atomic_fetch_or(&cap->sems[k].word, SEM_FROZEN, __ATOMIC_SEQ_CST);
	memset(live, 0, seg->max_procs);

	for (uint32_t i = 0; i < seg->max_conns; i++) {
		struct seg_conn *c = &seg->conns[i];
		uint32_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
		if (st != SLOT_LIVE && st != SLOT_CLAIMED)
			continue;
		if (!proc_is_live(seg, c->proc, c->pid, live))
			continue;
		for (int k = 0; k < CAP_SEMS; k++) {
			uint8_t h;
			/* An announced CAS lasts a few instructions; a live process
			 * stopped inside one is waited for, up to a second. */
			for (int spins = 0; spins < 10000; spins++) {
				h = __atomic_load_n(&c->hold[k], __ATOMIC_ACQUIRE);
				if (h != HOLD_ACQUIRING && h != HOLD_RELEASING)
					break;
				if (spins > 100)
					usleep(100);
				else
					sched_yield();
			}
			if (h == HOLD_HELD || h == HOLD_RELEASING || h == HOLD_ACQUIRING)
				held[k]++;
		}
	}
	for (int i = 0; i < SEG_MAX_WAITERS; i++) {
		struct seg_waiter *w = &cap->waiters[i];
		if (w->state == WAITER_FREE)
			continue;
		if (!proc_is_live(seg, w->proc, w->pid, live)) {
			w->state = WAITER_FREE;     /* a dead waiter, granted or not */
			continue;
		}
		if (w->state == WAITER_GRANTED)
			held[w->sem]++;
		else
			waiting[w->sem]++;
	}
	held[SEM_ACTIVE] += lanes_audit_locked(seg, cap, live);
	for (int k = 0; k < CAP_SEMS; k++) {
		uint64_t flags = __atomic_load_n(&cap->sems[k].word, __ATOMIC_SEQ_CST)
		                 & (SEM_CLOSED | SEM_LANES);
		__atomic_store_n(&cap->sems[k].word,
		                 (uint64_t)held[k] | ((uint64_t)waiting[k] << SEM_WAIT_SHIFT) | flags,
		                 __ATOMIC_SEQ_CST);
		admit_locked(cap, k);
	}
	lanes_admit_locked(cap);
}

void cap_audit(struct segment *seg)
{
	if (!seg || !seg->hdr)
		return;
	if (cap_lock(seg, &seg->hdr->cap) != 0)
		return;
	audit_locked(seg, &seg->hdr->cap);
	cap_unlock(&seg->hdr->cap);
}


/* ---- lanes (see cap.h) -------------------------------------------------- */

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

static int lane_room(struct seg_cap *cap, unsigned lane, int exclusive)
{
	struct seg_lanes *L = &cap->lanes;
	uint64_t w = __atomic_load_n(&cap->sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST);
	uint32_t max = __atomic_load_n(&cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED);
	if (L->excl_active)
		return 0;
	if (exclusive)
		return sem_count(w) == 0;
	if (L->excl_waiting || (max && sem_count(w) >= max))
		return 0;
	return !L->lane[lane].max || L->lane[lane].active < L->lane[lane].max;
}

static void lane_take(struct seg_cap *cap, unsigned lane, int exclusive)
{
	word_add(&cap->sems[SEM_ACTIVE], 1);
	cap->lanes.lane[lane].active++;
	if (exclusive)
		cap->lanes.excl_active++;
}

/* Is a served before b: higher priority, then the older ticket. */
static int lane_before(const struct seg_lane_waiter *a, const struct seg_lane_waiter *b)
{
	return !b || a->priority > b->priority || (a->priority == b->priority && a->ticket < b->ticket);
}

/* Admit queued lane waiters in order while there is room (see cap.h). */
static void lanes_admit_locked(struct seg_cap *cap)
{
	struct seg_lanes *L = &cap->lanes;
	while (L->nwaiting) {
		struct seg_lane_waiter *best = NULL;
		for (int i = 0; i < CAP_LANE_WAITERS; i++) {
			struct seg_lane_waiter *w = &L->waiters[i];
			if (w->state != WAITER_QUEUED || (L->excl_waiting && !w->exclusive))
				continue;
			if (lane_before(w, best))
				best = w;
		}
		if (best && !best->exclusive && !lane_room(cap, best->lane, 0)) {
			/* its lane is full: the first that has room, in the same order */
			best = NULL;
			for (int i = 0; i < CAP_LANE_WAITERS; i++) {
				struct seg_lane_waiter *w = &L->waiters[i];
				if (w->state == WAITER_QUEUED && !w->exclusive && lane_before(w, best)
				    && lane_room(cap, w->lane, 0))
					best = w;
			}
		}
		if (!best || !lane_room(cap, best->lane, (int)best->exclusive))
			return;
		best->state = WAITER_GRANTED;
		lane_take(cap, best->lane, (int)best->exclusive);
		L->nwaiting--;
		L->lane[best->lane].waiting--;
		if (best->exclusive)
			L->excl_waiting--;
		futex_wake(&best->futex);
	}
}

static void lane_unqueue(struct seg_lanes *L, struct seg_lane_waiter *w)
{
	if (w->state == WAITER_QUEUED) {
		L->nwaiting--;
		L->lane[w->lane].waiting--;
		if (w->exclusive)
			L->excl_waiting--;
	}
	w->state = WAITER_FREE;
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

enum cap_result cap_lane_acquire(struct segment *seg, struct seg_cap *cap, unsigned lane,
                                 uint8_t *hold, uint8_t *lane_held, uint32_t proc, int tid,
                                 uint64_t timeout_ns, int holds_other, int try_only,
                                 uint64_t *waited_ns)
{
	struct seg_lanes *L = &cap->lanes;
	struct seg_proc *p = seg && proc < seg->max_procs ? &seg->procs[proc] : NULL;
	uint64_t start = cap_now_ns();
	*waited_ns = 0;
	if (cap_lock(seg, cap) != 0)
		return CAP_ERROR;
	if (lane >= CAP_LANES || lane > L->nlanes)
		lane = 0;                /* the table changed under us: the default */
	int exclusive = L->lane[lane].exclusive != 0;
	lanes_admit_locked(cap);         /* a raised cap may have room for the queue */
	if (lane_room(cap, lane, exclusive)) {
		lane_take(cap, lane, exclusive);
		*lane_held = (uint8_t)((lane + 1) | (exclusive ? LANE_HELD_EXCL : 0));
		__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
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
		if (L->waiters[i].state == WAITER_FREE)
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
	me->since_ns = clock_ns(CLOCK_REALTIME);
	me->state = WAITER_QUEUED;
	L->nwaiting++;
	L->lane[lane].waiting++;
	if (exclusive)
		L->excl_waiting++;
	__atomic_store_n(hold, HOLD_WAITING, __ATOMIC_RELEASE);
	cap_unlock(cap);

	enum cap_result result = CAP_TIMEOUT;
	for (;;) {
		sleep_unless_granted(&me->futex, &me->state, start + timeout_ns);
		if (cap_lock(seg, cap) != 0) {
			result = CAP_ERROR;
			break;
		}
		lanes_admit_locked(cap);     /* room made without a lane release (a reload) */
		if (me->state == WAITER_GRANTED) {
			*lane_held = (uint8_t)((me->lane + 1) | (me->exclusive ? LANE_HELD_EXCL : 0));
			__atomic_store_n(hold, HOLD_HELD, __ATOMIC_RELEASE);
			me->state = WAITER_FREE;
			seg_add(&cap->sems[SEM_ACTIVE].acquired, 1);
			seg_add(&L->lane[me->lane].acquired, 1);
			cap_unlock(cap);
			result = CAP_OK;
			break;
		}
		if (cap_now_ns() >= start + timeout_ns) {
			lane_unqueue(L, me);     /* an audit may have dropped it */
			__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
			lanes_admit_locked(cap); /* an exclusive waiter held the others back */
			cap_unlock(cap);
			break;
		}
		cap_unlock(cap);
		if (seg)
			seg_reap(seg);
	}
	*waited_ns = cap_now_ns() - start;
	lane_record_wait(cap, lane, p, *waited_ns, result != CAP_OK);
	return result;
}

void cap_lane_release(struct segment *seg, struct seg_cap *cap, uint8_t *hold,
                      uint8_t *lane_held)
{
	struct seg_lanes *L = &cap->lanes;
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	if (cap_lock(seg, cap) != 0)
		return;
	unsigned held = *lane_held;
	unsigned lane = (held & ~LANE_HELD_EXCL) - 1;
	if (held && lane < CAP_LANES && L->lane[lane].active)
		L->lane[lane].active--;
	if ((held & LANE_HELD_EXCL) && L->excl_active)
		L->excl_active--;
	*lane_held = 0;
	uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	if (sem_count(w) > 0)
		word_add(s, -1);
	__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
	lanes_admit_locked(cap);
	admit_locked(cap, SEM_ACTIVE);   /* waiters of before the lanes, if any */
	cap_unlock(cap);
}

/* Count each lane's holders again from the live connection records (pid:
 * only that process's, for a private cap; 0: all live ones), mapping the
 * lane a slot was taken in through `names` (the table it was taken under)
 * to the table in force. */
static void lanes_recount_locked(struct segment *seg, struct seg_cap *cap,
                                 char (*names)[CAP_LANE_NAME], pid_t pid, signed char *live)
{
	struct seg_lanes *L = &cap->lanes;
	for (int i = 0; i < CAP_LANES; i++)
		L->lane[i].active = 0;
	L->excl_active = 0;
	for (int i = 0; i < CAP_LANE_WAITERS; i++)
		if (L->waiters[i].state == WAITER_GRANTED) {
			L->lane[L->waiters[i].lane].active++;
			L->excl_active += L->waiters[i].exclusive;
		}
	if (!seg || !seg->conns)
		return;
	for (uint32_t i = 0; i < seg->max_conns; i++) {
		struct seg_conn *c = &seg->conns[i];
		uint32_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
		if ((st != SLOT_LIVE && st != SLOT_CLAIMED) || !c->lane_held)
			continue;
		if (pid ? c->pid != pid : !proc_is_live(seg, c->proc, c->pid, live))
			continue;
		uint8_t h = __atomic_load_n(&c->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE);
		if (h != HOLD_HELD && h != HOLD_RELEASING && h != HOLD_ACQUIRING) {
			c->lane_held = 0;
			continue;
		}
		unsigned old = (c->lane_held & ~LANE_HELD_EXCL) - 1, now = 0;
		if (old < CAP_LANES)
			now = cap_lane_find(cap, names[old]);
		int excl = (c->lane_held & LANE_HELD_EXCL) != 0;
		c->lane_held = (uint8_t)((now + 1) | (excl ? LANE_HELD_EXCL : 0));
		L->lane[now].active++;
		L->excl_active += (uint32_t)excl;
	}
}

/* The audit's part for lanes: drop dead waiters, count the lanes again.
 * Returns the granted lane waiters not yet awake (counted, no holder). */
static uint32_t lanes_audit_locked(struct segment *seg, struct seg_cap *cap, signed char *live)
{
	struct seg_lanes *L = &cap->lanes;
	uint32_t granted = 0;
	char names[CAP_LANES][CAP_LANE_NAME];
	for (int i = 0; i < CAP_LANE_WAITERS; i++) {
		struct seg_lane_waiter *w = &L->waiters[i];
		if (w->state == WAITER_FREE)
			continue;
		if (!proc_is_live(seg, w->proc, w->pid, live))
			lane_unqueue(L, w);
		else if (w->state == WAITER_GRANTED)
			granted++;
	}
	for (int i = 0; i < CAP_LANES; i++)
		memcpy(names[i], L->lane[i].name, CAP_LANE_NAME);
	lanes_recount_locked(seg, cap, names, 0, live);
	return granted;
}

void cap_lanes_configure(struct segment *seg, struct seg_cap *cap, const struct policy *p,
                         struct segment *records)
{
	static signed char live[SEG_PROCS_LIMIT];   /* under the lock */
	struct seg_lanes *L = &cap->lanes;
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	int n = p->nlanes < CAP_LANES - 1 ? p->nlanes : CAP_LANES - 1;
	if (cap_lock(seg, cap) != 0)
		return;
	int same = (uint32_t)n == L->nlanes && strcmp(L->lane[0].name, "default") == 0;
	for (int i = 0; same && i < n; i++)
		same = strcmp(L->lane[i + 1].name, p->lanes[i].name) == 0;
	if (!same) {
		/* a new table: statistics and holders go by name */
		static struct seg_lane old[CAP_LANES];   /* under the lock */
		static char names[CAP_LANES][CAP_LANE_NAME];
		memcpy(old, L->lane, sizeof old);
		for (int i = 0; i < CAP_LANES; i++)
			memcpy(names[i], old[i].name, CAP_LANE_NAME);
		snprintf(names[0], CAP_LANE_NAME, "%s", "");   /* lane 0 is the default by place */
		memset(L->lane, 0, sizeof L->lane);
		snprintf(L->lane[0].name, CAP_LANE_NAME, "default");
		for (int i = 0; i < n; i++)
			snprintf(L->lane[i + 1].name, CAP_LANE_NAME, "%s", p->lanes[i].name);
		L->nlanes = (uint32_t)n;
		for (int i = 0; i < CAP_LANES; i++) {
			unsigned to = i == 0 ? 0 : cap_lane_find(cap, old[i].name);
			if (i > 0 && (!old[i].name[0] || !to))
				continue;
			struct seg_lane *l = &L->lane[to];
			l->acquired = old[i].acquired;
			l->waits = old[i].waits;
			l->timeouts = old[i].timeouts;
			l->wait_ns_sum = old[i].wait_ns_sum;
			memcpy(l->hist, old[i].hist, sizeof l->hist);
		}
		/* queued waiters: into the lane of the same name, else the default */
		for (int i = 0; i < CAP_LANE_WAITERS; i++) {
			struct seg_lane_waiter *w = &L->waiters[i];
			if (w->state == WAITER_FREE)
				continue;
			w->lane = w->lane < CAP_LANES ? cap_lane_find(cap, old[w->lane].name) : 0;
			if (w->state == WAITER_QUEUED)
				L->lane[w->lane].waiting++;
		}
		memset(live, 0, sizeof live);
		lanes_recount_locked(records, cap, names, seg ? 0 : getpid(), live);
		__atomic_fetch_add(&L->gen, 1, __ATOMIC_RELEASE);
	}
	L->lane[0].priority = 0;
	for (int i = 0; i < n; i++) {
		struct seg_lane *l = &L->lane[i + 1];
		l->max = p->lanes[i].max_active;
		l->priority = p->lanes[i].priority;
		l->exclusive = p->lanes[i].exclusive ? 1 : 0;
	}
	for (int i = 0; i < CAP_LANE_WAITERS; i++)
		if (L->waiters[i].state == WAITER_QUEUED)
			L->waiters[i].priority = L->lane[L->waiters[i].lane].priority;
	if (n) {
		__atomic_fetch_or(&s->word, SEM_LANES, __ATOMIC_SEQ_CST);
	} else {
		__atomic_fetch_and(&s->word, ~SEM_LANES, __ATOMIC_SEQ_CST);
		/* lane waiters left (a reload removed every lane): serve them all */
		for (int i = 0; i < CAP_LANE_WAITERS; i++)
			L->waiters[i].exclusive = 0;
		L->excl_waiting = 0;
		L->excl_active = 0;
	}
	lanes_admit_locked(cap);
	cap_unlock(cap);
}
