/*
 * cap_int.h - what cap.c, cap_lanes*.c, cap_revoke.c and cap_park.c lend
 * each other, and nothing else includes: the cap's lock (with the audit
 * and the sweep it runs),
 * the futex, the wait statistics, and the lanes' parts of the sweep,
 * admission and audit, each called with the lock held.
 */
#ifndef PQSHIM_CAP_INT_H
#define PQSHIM_CAP_INT_H

#include "cap.h"
#include "segment.h"

#define CAP_SLICE_NS   (200 * 1000000ull)   /* a waiter looks around this often */

/* ---- cap.c ---------------------------------------------------------------- */

/* Lock by deadline_ns (cap_now_ns(); 0: none): 0 or an errno.  A dead
 * holder's state, or a recount left due, is rebuilt first. */
int cap_lock(struct segment *seg, struct seg_cap *cap, uint64_t deadline_ns);
void cap_unlock(struct seg_cap *cap);
/* The lock did not come (its holder is stopped): what this thread held, or
 * was granted, is no longer counted from the next holder's audit on. */
void cap_drop_hold(struct seg_cap *cap, uint8_t *hold);
void cap_abandon_grant(struct seg_cap *cap, uint32_t *state, uint8_t *hold);
void futex_wait(uint32_t *addr, uint32_t seen, uint64_t ns);
void futex_wake(uint32_t *addr);
void word_add(struct seg_sem *s, int64_t delta);
void record_wait(struct seg_sem *s, struct seg_proc *p, uint64_t ns, int timed_out);
/* Is the process record idx live and still pid?  cache: per record, 0 unknown. */
int proc_is_live(struct segment *seg, uint32_t idx, int32_t pid, signed char *cache);
/* A counted slot of sem goes back: to the head waiter (the count stays),
 * unless the count is above a lowered cap; else counted down. */
void give_back_locked(struct seg_cap *cap, int sem);
/* Admit the global queue's waiters of sem while there is room. */
void admit_locked(struct seg_cap *cap, int sem);
/* The audit (cap.h): freeze, count the live holders, thaw. */
void audit_locked(struct segment *seg, struct seg_cap *cap);

/* ---- cap_park.c ----------------------------------------------------------- */

/* Take every parked slot back (cap.h, "Parked slots"), the lock held:
 * SEM_SWEPT set, then the records looked at, unless the bit was set
 * already and not `always` (a waiter's change is in the word; a change of
 * max or scope is not). */
void cap_sweep_parked_locked(struct segment *seg, struct seg_cap *cap, int always);

/* May a parked slot of this (shared) cap stay parked, by the word w and
 * max: a max, the count within it, nobody waiting, no flag, not scope =
 * cluster (cap.h, "Parked slots")?  The parker's look and the audit's. */
int cap_parking_allowed(const struct seg_cap *cap, uint64_t w, uint32_t max);

/* ---- cap_revoke.c --------------------------------------------------------- */

/* cap_now_ns() in ms, mod 2^32, never 0 (the waiters' granted_ms). */
uint32_t cap_ms_stamp(void);

/* A queue whose grants a stopped owner cannot claim are taken back: the
 * plain cap's (cap_revoke.c) or the lanes' (cap_lanes.c).  An entry's
 * granted_ms is stamped when it is granted and stays set while it is
 * QUEUED after a revoke (admission passes it by) until its owner resumes. */
struct grant_entry {
	uint32_t *state;         /* enum waiter_state */
	uint32_t *granted_ms;
	uint64_t ticket;
	int32_t pid, tid;
};
struct grant_queue {
	struct segment *seg;
	struct seg_cap *cap;
	uint64_t deadline;       /* the looking waiter's: bounds the lock */
	int n;                   /* entries */
	uint32_t sem;            /* the plain queue's: its semaphore */
	/* entry i as it reads (without the lock, or under it); 0: not of this queue */
	int (*entry)(const struct grant_queue *q, int i, struct grant_entry *e);
	/* under the lock, entry i just turned GRANTED -> QUEUED: its slot
	 * uncounted, itself in line again (passed by), the next admitted */
	void (*revoked_locked)(const struct grant_queue *q, int i);
	/* under the lock, entry i's owner runs again (granted_ms now 0): admit */
	void (*resumed_locked)(const struct grant_queue *q, int i);
};
/* An entry's fields as grant_entry has them (read with atomics). */
static inline void grant_entry_of(struct grant_entry *e, uint32_t *state, uint32_t *granted_ms,
                                  uint64_t *ticket, int32_t *pid, int32_t *tid)
{
	e->state = state;
	e->granted_ms = granted_ms;
	e->ticket = __atomic_load_n(ticket, __ATOMIC_RELAXED);
	e->pid = __atomic_load_n(pid, __ATOMIC_RELAXED);
	e->tid = __atomic_load_n(tid, __ATOMIC_RELAXED);
}
/* At the end of a slice, still in line: grants unclaimed for 2 slices
 * whose owner thread is stopped go back to the queue, and on. */
void grants_revoke_stopped(const struct grant_queue *q);
/* Entry i (ours) was revoked and we run again: our place in line is live
 * again.  0, or -1 if the lock did not come by q->deadline. */
int grant_resume(const struct grant_queue *q, int i);
/* The two for the plain queue, for cap.c's waiter. */
void cap_revoke_stopped(struct cap_wait *wt);
int cap_revoked_resume(struct cap_wait *wt);

/* ---- cap_lanes.c, cap_lanes_table.c ----------------------------------------- */

static inline uint32_t lane_waiter_state(struct seg_lane_waiter *w)
{
	return __atomic_load_n(&w->state, __ATOMIC_ACQUIRE);
}
/* w leaves the lane queue's counts (under the lock); the global word's
 * waiting field is the caller's. */
void lane_dequeue_counts(struct seg_lanes *L, const struct seg_lane_waiter *w);

/* Lane waiters that gave up at their deadline: out of line. */
void lanes_sweep_locked(struct seg_cap *cap);
/* Admit queued lane waiters in order while there is room. */
void lanes_admit_locked(struct seg_cap *cap);
/* The audit's start: no lane word's CAS lands in this epoch any more. */
void lanes_freeze_locked(struct seg_cap *cap);
/* The audit's part for lanes: drop dead waiters, count every lane again
 * and thaw the lane words.  Returns the granted lane waiters not yet awake
 * (counted, no holder); adds the queued ones to *waiting. */
uint32_t lanes_audit_locked(struct segment *seg, struct seg_cap *cap, signed char *live,
                            uint32_t *waiting);

#endif
