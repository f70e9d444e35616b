/*
 * handoff.c - how long a slot takes to pass from a releasing process to a
 * waiting one, through the cap's real code (shim/cap.c) in a real segment.
 *
 * Two processes share one slot (max = 1) and pass it back and forth.  Each
 * round, the holder waits until the other is queued, stamps CLOCK_MONOTONIC
 * into the segment's spare word and releases; the waiter, once it has the
 * slot, stamps again.  The difference is the hand-off latency: the
 * releaser's grant and the waiter's claim under the lock, and between them
 * either the futex wake and the scheduler or, once the steady holds let the
 * head foretell the release (cap_spin.h), nothing: it spins through it.
 * Prints "handoff_us median p99 rounds".
 */
#include "cap.h"
#include "segment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static char seg_file[320];
static void remove_segment(void)
{
	unlink(seg_file);
}

/* One side: `rounds` times, take the slot (waiting), note the latency,
 * then wait for the other side to queue and hand it over.  The first side
 * starts holding the slot (`hold`: taken before the fork, so that the
 * other side, however it is scheduled, always waits for it first). */
static void side(struct segment *seg, uint64_t *stamp, uint64_t *lat, int rounds, int first,
                 uint8_t hold)
{
	struct seg_cap *cap = &seg->hdr->cap;
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	uint64_t waited;
	for (int i = 0; i < rounds; i++) {
		if (!(first && i == 0)) {
			if (cap_acquire_slow(seg, cap, SEM_ACTIVE, &hold, 0, getpid(), 10000000000ull,
			                     0, &waited) != CAP_OK) {
				fprintf(stderr, "handoff: acquire failed (round %d)\n", i);
				exit(1);
			}
			lat[i] = cap_now_ns() - __atomic_load_n(stamp, __ATOMIC_ACQUIRE);
		} else {
			lat[i] = 0;
		}
		/* Pass it on once the other side is queued (the second side's
		 * last release has nobody left to take it); after 10 s the other
		 * side has failed: give up rather than spin for ever. */
		uint64_t deadline = cap_now_ns() + 10000000000ull;
		for (unsigned spin = 1; !(!first && i == rounds - 1)
		     && sem_waiting(__atomic_load_n(&s->word, __ATOMIC_ACQUIRE)) == 0; spin++) {
			if ((spin & 0xfff) == 0 && cap_now_ns() > deadline) {
				fprintf(stderr, "handoff: the other side never queued (round %d)\n", i);
				exit(1);
			}
		}
		__atomic_store_n(stamp, cap_now_ns(), __ATOMIC_RELEASE);
		if (sem_release(s, &hold) == SEM_RELEASE_SLOW)
			cap_release_slow(seg, cap, SEM_ACTIVE, &hold);
	}
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 2000;
	char name[64];
	snprintf(name, sizeof name, "bench-handoff-%d", (int)getpid());
	/* A fresh segment: the two sides hold slots without connection
	 * records, so an audit (after reaping a dead process left in an old
	 * segment of the same name) would not see them. */
	seg_path(name, SEG_NO_GROUP, seg_file, sizeof seg_file);
	unlink(seg_file);
	struct segment seg;
	struct seg_want ask = { name, NULL, 0, 0, 1 };
	char why[SEG_ERROR_MAX];
	if (seg_attach(&seg, &ask, why, sizeof why) != SEG_OK) {
		fprintf(stderr, "handoff: %s\n", why);
		return 1;
	}
	atexit(remove_segment);          /* on failure too, from either side */
	cap_set_max(&seg, &seg.hdr->cap, SEM_ACTIVE, 1);
	uint8_t hold = HOLD_NONE;
	if (!sem_try_acquire(&seg.hdr->cap.sems[SEM_ACTIVE], &hold)) {
		fprintf(stderr, "handoff: the first acquire failed\n");
		return 1;
	}
	uint64_t *stamp = &seg.hdr->totals.untracked;   /* a spare word nobody uses here */
	uint64_t *lat = calloc((size_t)rounds, sizeof *lat);

	int pipefd[2];
	if (pipe(pipefd) != 0)
		return 1;
	pid_t kid = fork();
	if (kid == 0) {
		side(&seg, stamp, lat, rounds, 0, HOLD_NONE);
		(void)!write(pipefd[1], lat, (size_t)rounds * sizeof *lat);
		_exit(0);
	}
	/* The parent holds the slot first; its last hand-off has no taker, so
	 * it runs one round fewer and the child one round more in total. */
	side(&seg, stamp, lat, rounds, 1, hold);
	uint64_t *theirs = calloc((size_t)rounds, sizeof *theirs);
	size_t want = (size_t)rounds * sizeof *theirs, got = 0;
	while (got < want) {
		ssize_t n = read(pipefd[0], (char *)theirs + got, want - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	waitpid(kid, NULL, 0);
	uint64_t *all = calloc(2 * (size_t)rounds, sizeof *all);
	int n = 0;
	for (int i = 1; i < rounds; i++)
		all[n++] = lat[i];
	for (int i = 0; i < rounds; i++)
		all[n++] = theirs[i];
	qsort(all, (size_t)n, sizeof *all, cmp);
	printf("handoff_us %.1f %.1f %d\n", all[n / 2] / 1e3, all[(size_t)n * 99 / 100] / 1e3, n);
	return 0;                        /* remove_segment() at exit */
}
