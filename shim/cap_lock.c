/*
 * cap_lock.c - the cap's mutex by a deadline (cap_lock.h).
 */
#include "cap_lock.h"
#include "clock.h"
#include "procid.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

static __thread int blocked_tid;     /* the holder when this thread's wait gave up */
static int stuck_tid;                /* the holder a fixed-bound wait gave up on */

/* The holder's thread id (glibc writes it for every kind of mutex). */
static int holder_tid(pthread_mutex_t *m)
{
	return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED);
}

int cap_mutex_lock(pthread_mutex_t *m, uint64_t deadline_ns)
{
	int r = pthread_mutex_trylock(m);
	if (r != EBUSY) {
		if (r == 0 && __atomic_load_n(&stuck_tid, __ATOMIC_RELAXED))
			__atomic_store_n(&stuck_tid, 0, __ATOMIC_RELAXED);
		return r;
	}
	int owner = holder_tid(m), fixed = deadline_ns == 0, wait = deadline_ns > 1;
	if (fixed) {
		/* still the holder we gave up on: it is not coming back soon */
		wait = !owner || owner != __atomic_load_n(&stuck_tid, __ATOMIC_RELAXED);
		deadline_ns = clock_ns(CLOCK_MONOTONIC) + CAP_LOCK_BOUND_NS;
	}
	r = ETIMEDOUT;
	if (wait) {
		struct timespec ts = { (time_t)(deadline_ns / 1000000000u),
		                       (long)(deadline_ns % 1000000000u) };
		r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
	}
	if (r == ETIMEDOUT && (wait || fixed)) {
		int now = holder_tid(m);
		blocked_tid = now ? now : owner;
		__atomic_store_n(&stuck_tid, blocked_tid, __ATOMIC_RELAXED);
	} else if (r == 0) {
		__atomic_store_n(&stuck_tid, 0, __ATOMIC_RELAXED);
	}
	return r;
}

void cap_lock_blocker_clear(void)
{
	blocked_tid = 0;
}

int cap_lock_blocker(char *buf, size_t size)
{
	int tid = blocked_tid;
	pid_t pid = 0;
	if (!tid)
		return 0;
	blocked_tid = 0;         /* said once */
	char state = procid_task_state(tid, &pid);
	if (!state)
		snprintf(buf, size, "the segment's lock is held by thread %d", tid);
	else
		snprintf(buf, size, "the segment's lock is held by pid %d%s", pid,
		         state == 'T' || state == 't' ? ", which is stopped" : "");
	return 1;
}
