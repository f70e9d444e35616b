/*
 * cap_int.h - what cap.c, cap_lanes.c and cap_revoke.c lend each other, and nothing
 * else includes: the cap's lock (with the audit and the sweep it runs),
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
/* Admit the global queue's waiters of sem while there is room. */
void admit_locked(struct seg_cap *cap, int sem);
/* The audit (cap.h): freeze, count the live holders, thaw. */
void audit_locked(struct segment *seg, struct seg_cap *cap);

/* ---- cap_revoke.c --------------------------------------------------------- */

/* cap_now_ns() in ms, mod 2^32, never 0 (seg_waiter.granted_ms). */
uint32_t cap_ms_stamp(void);
/* At the end of a slice, still in line: grants of our semaphore unclaimed
 * for 2 slices whose owner is stopped go back to the queue, and on. */
void cap_revoke_stopped(struct cap_wait *wt);
/* Our grant was revoked and we run again: our place in line is live again.
 * 0, or -1 if the lock did not come by our deadline. */
int cap_revoked_resume(struct cap_wait *wt);

/* ---- cap_lanes.c ---------------------------------------------------------- */

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
