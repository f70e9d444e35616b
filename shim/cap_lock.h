/*
 * cap_lock.h - taking the cap's process-shared mutex, always by a deadline,
 * and saying who held it when a wait gave up.
 *
 * A robust mutex hands on a dead holder's lock, not a stopped one's (SIGSTOP,
 * a debugger, a frozen cgroup): every wait on it is bounded.  A caller with
 * a deadline (a waiter's wait_timeout) waits until then; one without (a
 * release, a recount, a change of the cap at start-up) waits at most
 * CAP_LOCK_BOUND_NS, and not at all while a holder that a wait of this
 * process gave up on still holds the lock.  The uncontended path is one trylock, as before.
 */
#ifndef PQSHIM_CAP_LOCK_H
#define PQSHIM_CAP_LOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define CAP_LOCK_BOUND_NS (1000 * 1000000ull)   /* where the caller has no deadline */

/* Lock m by deadline_ns (CLOCK_MONOTONIC; 0: the fixed bound; 1: try
 * only): 0, EOWNERDEAD (the caller makes it consistent), or ETIMEDOUT. */
int cap_mutex_lock(pthread_mutex_t *m, uint64_t deadline_ns);

/* Did this thread's last wait on the lock (since cap_lock_blocker_clear)
 * give up?  Then 1 and a sentence in buf: "the segment's lock is held by
 * pid N[, which is stopped]" (/proc's state of the holder's thread), and
 * forget it. */
int cap_lock_blocker(char *buf, size_t size);
void cap_lock_blocker_clear(void);

#endif
