/*
 * startup.h - start-up, threads, fork and exit (startup.c): the shim comes
 * up at the first call into libpq, each thread registers at its first
 * call, a fork child re-registers as its own process.
 */
#ifndef PQSHIM_STARTUP_H
#define PQSHIM_STARTUP_H

#include "shim.h"

/* Load the policy, attach the segment, register the process. */
void shim_init(void);

/* Register the calling thread (and, first in a fork child, the process). */
void thread_register(void);
void shim_enter_slow(void);

/* A good policy arrived for a process that started on an unusable one and
 * guessed another segment: move to the policy's (startup.c).  0 if moved. */
int startup_move_segment(const struct policy *p);

ALWAYS_INLINE void shim_ensure(void)
{
	if (unlikely(__atomic_load_n(&hot.state, __ATOMIC_ACQUIRE) != SHIM_READY))
		shim_init();
}

/* The first call of a thread (or of a fork child) registers it. */
ALWAYS_INLINE void shim_enter(void)
{
	if (unlikely(t.tid == 0))
		shim_enter_slow();
}

#endif
