/*
 * fastpath.c - nanoseconds per call of the shim's own fast paths, in a
 * tight loop on one core: an uncontended slot acquire + release (the two
 * CASes on the semaphore word), a connection look-up in the map (a probe,
 * the per-thread cache bypassed), and a TSC read.  Method: 10 million
 * iterations after a warm-up, CLOCK_MONOTONIC around the loop, the best of
 * 5 runs (the least disturbed by other load).  Prints "name ns" lines.
 */
#include "cap.h"
#include "clock.h"
#include "connmap.h"

#include <stdio.h>
#include <stdlib.h>

#define N 10000000

static double best_of(double (*run)(void))
{
	double best = 1e9;
	for (int i = 0; i < 5; i++) {
		double ns = run();
		if (ns < best)
			best = ns;
	}
	return best;
}

static struct seg_sem sem;
static double run_slot(void)
{
	uint8_t hold = 0;
	sem.max = 100;
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < N; i++) {
		if (!sem_try_acquire(&sem, &hold) || sem_release(&sem, &hold) != SEM_RELEASE_DONE)
			abort();
	}
	return (double)(clock_ns(CLOCK_MONOTONIC) - t0) / N;
}

static struct connmap map;
static char keys[64 * 16];
static double run_lookup(void)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	uintptr_t sum = 0;
	for (int i = 0; i < N; i++)
		sum += (uintptr_t)connmap_get(&map, keys + 16 * (i & 63));
	if (!sum)
		abort();
	return (double)(clock_ns(CLOCK_MONOTONIC) - t0) / N;
}

static double run_ticks(void)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC), sum = 0;
	for (int i = 0; i < N; i++)
		sum += clock_ticks();
	if (!sum)
		abort();
	return (double)(clock_ns(CLOCK_MONOTONIC) - t0) / N;
}

int main(void)
{
	for (int i = 0; i < 64; i++)
		connmap_put(&map, keys + 16 * i, keys + 16 * i + 1);
	printf("slot_acquire_release_ns %.1f\n", best_of(run_slot));
	printf("map_lookup_ns %.1f\n", best_of(run_lookup));
	printf("tsc_read_ns %.1f\n", best_of(run_ticks));
	return 0;
}
