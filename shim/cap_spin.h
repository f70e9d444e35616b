/*
 * cap_spin.h - the head waiter awake when its slot comes: when the next
 * slot of a full cap frees, and waiting for it spinning instead of asleep.
 *
 * Under a full cap a slot passes from a releaser to the head waiter
 * (cap.c).  Asleep on its futex, the head costs the hand-off a system call
 * in the releaser (FUTEX_WAKE) and a wake-up (the scheduler, often an idle
 * CPU brought back) before it can send its query.  Statements under a cap
 * often take about the same time, so the release can be foreseen: every
 * slow-path grant is stamped (a ring of the last CAP_SPIN_RING), and every
 * release with waiters queued measures how long the slot it gives back was
 * held (the oldest of the last `max` grants: under contention every slot
 * was granted, and slots held about as long free in the order granted).
 * An average of those holds (hold_us) and a score of how well it foretold
 * the last releases make the prediction.
 *
 * A waiter k places behind the head expects its slot at the (k mod max)-th
 * oldest grant + (k / max + 1) holds, give or take a window of twice the
 * holds' average distance from their mean (CAP_SPIN_WIN_MIN..MAX each side;
 * holds that vary more are not foretold at all: a spin would mostly miss).
 * It sleeps on its futex until the window opens (CAP_SPIN_WAKE_US early:
 * a timed sleep ends late); then, if it is the head, it spins (pause,
 * watching its entry) until the window closes, at most CAP_SPIN_MAX_US,
 * announced in `spinner`: a releaser that grants the spinning head bumps its futex word
 * and makes no system call.  A spinner that finds itself preempted (the
 * CPUs have other work, which a spin would take a CPU from) stops and
 * zeroes the score.  Nothing here waits for anybody: a holder that
 * is stopped or killed just lets the spin end, and the waiter sleeps as
 * before (cap.c's slices, the audit, the revoke); the spin never passes
 * the waiter's deadline.  Nothing of this is on the uncontended fast path:
 * the stamps and the average are written under the cap's lock, on the slow
 * path only; a waiter reads them without it (a torn view costs one wrong
 * guess, never a wrong count).  Only the plain cap's SEM_ACTIVE spins, and
 * only while max <= CAP_SPIN_RING and the score is good.
 */
#ifndef PQSHIM_CAP_SPIN_H
#define PQSHIM_CAP_SPIN_H

#include <stdint.h>

#define CAP_SPIN_RING      8       /* grants stamped; caps up to this many slots spin */
#define CAP_SPIN_WIN_MIN   50      /* the window each side of the predicted turn, in µs: */
#define CAP_SPIN_WIN_MAX   100     /* twice the holds' average miss, at least MIN; holds
                                    * that miss by more on average are not foretold */
#define CAP_SPIN_WAKE_US   100     /* a timed sleep ends about this late: wake up before */
#define CAP_SPIN_MAX_US    (2 * CAP_SPIN_WIN_MAX)  /* the most one spin lasts */
#define CAP_SPIN_PREEMPT_US 30     /* a gap this long between two looks at the clock: the
                                    * spinner was preempted, the CPUs are busy: stop */
#define CAP_SPIN_LOCK_US   50      /* granted while spinning: wait awake this long for the lock */
#define CAP_SPIN_SCORE_MAX 16
#define CAP_SPIN_SCORE_ON  8       /* spin only from this score up (+1 a release inside the
                                    * window, -2 outside: about 2 in 3 inside) */

struct cap_spin {                  /* in seg_cap (cap.h) */
	uint32_t stamp_us[CAP_SPIN_RING];  /* cap_spin_now_us() of the last slow-path grants */
	uint32_t grants;               /* grants stamped (the ring's next index, mod RING) */
	uint32_t hold_us;              /* average hold of a slot granted, 0: none measured yet */
	uint32_t dev_us;               /* average distance of a hold from hold_us */
	uint32_t score;                /* 0..CAP_SPIN_SCORE_MAX: how often releases fell inside */
	uint32_t spinner;              /* index + 1 of the waiter spinning now, 0 none (atomic) */
	uint64_t last_ticket;          /* the ticket of the last waiter granted */
};                                 /* all but spinner written under the cap's lock */

struct seg_cap;
struct seg_waiter;

/* cap_now_ns() in µs, mod 2^32 (differences only). */
uint32_t cap_spin_now_us(void);

/* A waiter was granted a slot of SEM_ACTIVE (under the lock). */
void cap_spin_granted_locked(struct cap_spin *sp, uint64_t ticket);

/* A holder of SEM_ACTIVE gives its slot back with waiters queued, under a
 * cap of `max` (under the lock, before the grant): one hold measured. */
void cap_spin_released_locked(struct cap_spin *sp, uint32_t max);

/* When the waiter `places` behind the head should get its slot, in
 * cap_spin_now_us() terms, under a cap of `max`: 1, *at and the window's
 * half-width *win (µs), or 0 when the cap does not foretell (score too
 * low, too many slots, no holds yet, too far behind). */
int cap_spin_predict(const struct cap_spin *sp, uint32_t max, uint64_t places, uint32_t *at,
                     uint32_t *win);

/* Is entry `idx` (of cap->waiters) spinning?  The releaser asks after its
 * grant's CAS: if so its futex word is bumped, no FUTEX_WAKE (cap.c). */
int cap_spin_is_spinning(struct cap_spin *sp, int idx);

/*
 * The waiter's sleep between two looks at its entry (wait_slice, cap.c),
 * instead of futex_wait(&me->futex, seen, until - now): sleeps until shortly
 * before its predicted turn, or spins through it if it is the head.  1 if
 * it waited (the caller looks at its entry again); 0 if the cap foretells
 * nothing for it: the caller sleeps as before.  Never past `until_ns`.
 */
int cap_spin_wait(struct seg_cap *cap, struct seg_waiter *me, uint32_t max, uint32_t seen,
                  uint64_t now_ns, uint64_t until_ns);

#endif
