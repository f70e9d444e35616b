/*
 * clock.h - the cheapest timestamp there is, for "last used" on every
 * statement.  On x86-64 it is the TSC (constant and non-stop on every CPU
 * this targets: one instruction, no vDSO call); elsewhere the coarse
 * monotonic clock.  Readers turn ticks into wall-clock time with the
 * segment's reference pair (seg_ticks_to_ns), so writers never convert.
 */
#ifndef PQSHIM_CLOCK_H
#define PQSHIM_CLOCK_H

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t clock_ticks(void) { return __rdtsc(); }
#define CLOCK_TICKS_ARE_NS 0
#else
static inline uint64_t clock_ticks(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#define CLOCK_TICKS_ARE_NS 1
#endif

static inline uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC in ms: the shim threads' and the drainer's timers. */
static inline uint64_t mono_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000u;
}

#endif
