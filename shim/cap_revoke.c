/*
 * cap_revoke.c - a grant its owner cannot claim goes to the next in line,
 * in either queue: the plain cap's (seg_waiter) and the lanes' (seg_lane_waiter).
 *
 * A slot handed to a waiter (WAITER_GRANTED) is the waiter's until it
 * claims it under the cap's lock.  A waiter stopped at that moment
 * (SIGSTOP, a debugger: /proc state T or t) would hold it, unused, for as
 * long as it stays stopped, and everyone behind it would time out (an
 * exclusive lane's grant: every lane).  So a waiter still in line at the
 * end of its slice looks for a grant in its queue unclaimed for
 * CAP_REVOKE_MS whose owner thread is stopped and, under the lock, turns it
 * back to QUEUED (its ticket, so its place, kept), gives its slot back and
 * admits the next waiter in its stead.  The revoked entry keeps its
 * granted_ms: admission passes it by until its owner runs again and asks
 * for its turn back (grant_resume).  The claim checks the state under the
 * lock, so a claim and a revoke never both win, and the audit counts the
 * entry once: GRANTED as held, QUEUED as waiting.
 *
 * What is one queue's own (how an entry reads, how its slot goes back, how
 * it is put in line again) is the queue's struct grant_queue (cap_int.h):
 * the plain cap's below, the lanes' in cap_lanes.c.
 */
#include "cap_int.h"
#include "procid.h"

#define CAP_REVOKE_MS  (2 * (uint32_t)(CAP_SLICE_NS / 1000000))

uint32_t cap_ms_stamp(void)
{
	uint32_t ms = (uint32_t)(cap_now_ns() / 1000000);
	return ms ? ms : 1;
}

/* Is thread tid of pid (the process itself when tid is 0) stopped (state T
 * or t)?  0 when unknown. */
static int thread_stopped(int32_t pid, int32_t tid)
{
	pid_t of = 0;
	if (pid <= 0)
		return 0;
	char state = procid_task_state(tid > 0 ? tid : pid, &of);
	return of == pid && (state == 'T' || state == 't');
}

void grants_revoke_stopped(const struct grant_queue *q)
{
	uint32_t now = cap_ms_stamp();
	struct grant_entry e;
	for (int i = 0; i < q->n; i++) {
		if (!q->entry(q, i, &e)
		    || __atomic_load_n(e.state, __ATOMIC_ACQUIRE) != WAITER_GRANTED)
			continue;
		uint32_t at = __atomic_load_n(e.granted_ms, __ATOMIC_RELAXED);
		if (!at || now - at < CAP_REVOKE_MS || !thread_stopped(e.pid, e.tid))
			continue;
		if (cap_lock(q->seg, q->cap, q->deadline) != 0)
			return;
		struct grant_entry again;
		uint32_t granted = WAITER_GRANTED;
		if (q->entry(q, i, &again) && again.ticket == e.ticket
		    && *again.granted_ms == at
		    && __atomic_compare_exchange_n(again.state, &granted, WAITER_QUEUED, 0,
		                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			q->revoked_locked(q, i);
		cap_unlock(q->cap);
	}
}

int grant_resume(const struct grant_queue *q, int i)
{
	struct grant_entry e;
	if (cap_lock(q->seg, q->cap, q->deadline) != 0)
		return -1;
	if (q->entry(q, i, &e) && __atomic_load_n(e.state, __ATOMIC_ACQUIRE) == WAITER_QUEUED
	    && *e.granted_ms) {
		__atomic_store_n(e.granted_ms, 0, __ATOMIC_RELAXED);
		q->resumed_locked(q, i);
	}
	cap_unlock(q->cap);
	return 0;
}

/* ---- the plain cap's queue ------------------------------------------------ */

/* Entries of the waiter's semaphore only: a grant of another holds none of
 * its slots. */
static int plain_entry(const struct grant_queue *q, int i, struct grant_entry *e)
{
	struct seg_waiter *w = &q->cap->waiters[i];
	if (__atomic_load_n(&w->sem, __ATOMIC_RELAXED) != q->sem)
		return 0;
	grant_entry_of(e, &w->state, &w->granted_ms, &w->ticket, &w->pid, &w->tid);
	return 1;
}

static void plain_revoked_locked(const struct grant_queue *q, int i)
{
	(void)i;
	/* its slot uncounted, itself waiting again, in one step (fast paths
	 * see waiters and keep off) */
	word_add(&q->cap->sems[q->sem], (int64_t)SEM_WAIT_ONE - 1);
	admit_locked(q->cap, (int)q->sem);
}

static void plain_resumed_locked(const struct grant_queue *q, int i)
{
	(void)i;
	admit_locked(q->cap, (int)q->sem);
}

static struct grant_queue plain_queue(struct cap_wait *wt)
{
	return (struct grant_queue){
		.seg = wt->seg, .cap = wt->cap, .deadline = wt->deadline, .n = SEG_MAX_WAITERS,
		.sem = wt->me->sem, .entry = plain_entry, .revoked_locked = plain_revoked_locked,
		.resumed_locked = plain_resumed_locked,
	};
}

void cap_revoke_stopped(struct cap_wait *wt)
{
	struct grant_queue q = plain_queue(wt);
	grants_revoke_stopped(&q);
}

int cap_revoked_resume(struct cap_wait *wt)
{
	struct grant_queue q = plain_queue(wt);
	return grant_resume(&q, (int)(wt->me - wt->cap->waiters));
}
