/*
 * cap_revoke.c - a grant its owner cannot claim goes to the next in line.
 *
 * A slot handed to the head waiter (WAITER_GRANTED) is the waiter's until
 * it claims it under the cap's lock.  A waiter stopped at that moment
 * (SIGSTOP, a debugger: /proc state T or t) would hold it, unused, for as
 * long as it stays stopped, and everyone behind it would time out.  So a
 * waiter still in line at the end of its slice looks for a grant of its
 * semaphore unclaimed for CAP_REVOKE_MS whose owner thread is stopped and,
 * under the lock, turns it back to QUEUED (its ticket, so its place, kept)
 * and admits the next waiter in its stead.  The revoked entry keeps its
 * granted_ms: admission passes it by until its owner runs again and asks
 * for its turn back (cap_revoked_resume).  The claim (wait_slice) checks
 * the state under the lock, so a claim and a revoke never both win, and
 * the audit counts the entry once: GRANTED as held, QUEUED as waiting.
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

void cap_revoke_stopped(struct cap_wait *wt)
{
	struct seg_cap *cap = wt->cap;
	uint32_t sem = wt->me->sem, now = cap_ms_stamp();
	for (int i = 0; i < SEG_MAX_WAITERS; i++) {
		struct seg_waiter *w = &cap->waiters[i];
		if (__atomic_load_n(&w->state, __ATOMIC_ACQUIRE) != WAITER_GRANTED
		    || __atomic_load_n(&w->sem, __ATOMIC_RELAXED) != sem)
			continue;
		uint32_t at = __atomic_load_n(&w->granted_ms, __ATOMIC_RELAXED);
		uint64_t ticket = __atomic_load_n(&w->ticket, __ATOMIC_RELAXED);
		if (!at || now - at < CAP_REVOKE_MS
		    || !thread_stopped(__atomic_load_n(&w->pid, __ATOMIC_RELAXED),
		                       __atomic_load_n(&w->tid, __ATOMIC_RELAXED)))
			continue;
		if (cap_lock(wt->seg, cap, wt->deadline) != 0)
			return;
		uint32_t granted = WAITER_GRANTED;
		if (w->ticket == ticket && w->sem == sem && w->granted_ms == at
		    && __atomic_compare_exchange_n(&w->state, &granted, WAITER_QUEUED, 0,
		                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			/* its slot uncounted, itself waiting again, in one step
			 * (fast paths see waiters and keep off) */
			word_add(&cap->sems[sem], (int64_t)SEM_WAIT_ONE - 1);
			admit_locked(cap, (int)sem);
		}
		cap_unlock(cap);
	}
}

int cap_revoked_resume(struct cap_wait *wt)
{
	struct seg_waiter *me = wt->me;
	if (cap_lock(wt->seg, wt->cap, wt->deadline) != 0)
		return -1;
	if (__atomic_load_n(&me->state, __ATOMIC_ACQUIRE) == WAITER_QUEUED && me->granted_ms) {
		__atomic_store_n(&me->granted_ms, 0, __ATOMIC_RELAXED);
		admit_locked(wt->cap, (int)me->sem);
	}
	cap_unlock(wt->cap);
	return 0;
}
