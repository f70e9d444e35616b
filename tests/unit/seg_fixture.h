/* seg_fixture.h - the unit tests' segment: a fresh one named PREFIX-PID
 * (16 processes, 64 connections, a private cap), with this process claimed
 * in it, live.  Returns the process's index, or -1 if the segment could not
 * be made.  seg_fixture_close() undoes it. */
#ifndef PQSHIM_TEST_SEG_FIXTURE_H
#define PQSHIM_TEST_SEG_FIXTURE_H

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cap.h"
#include "procid.h"
#include "segment.h"

static int seg_fixture_open(struct segment *seg, const char *prefix, char *name, size_t size)
{
	char path[300];
	snprintf(name, size, "%s-%d", prefix, (int)getpid());
	seg_path(name, SEG_NO_GROUP, path, sizeof path);
	unlink(path);
	char why[SEG_ERROR_MAX];
	struct seg_want want = { name, NULL, 16, 64, 1 };
	if (seg_attach(seg, &want, why, sizeof why) != SEG_OK)
		return -1;
	int idx = seg_proc_claim(seg);
	struct seg_proc *p = &seg->procs[idx];
	p->pid = getpid();
	p->starttime = procid_starttime(getpid());
	__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
	return idx;
}

/* The fixture's segment detached and its file gone. */
static void seg_fixture_close(struct segment *seg, const char *name)
{
	char path[300];
	seg_path(name, SEG_NO_GROUP, path, sizeof path);
	seg_detach(seg);
	unlink(path);
}

/* A nap of ms milliseconds (threads' tests wait on each other with it). */
static inline void seg_fixture_nap(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A waiter for a slot of SEM_ACTIVE through the real slow path, as a
 * thread's body (pthread_create) or called in place: w->r and w->waited_ns
 * say how it went.  FIXTURE_WAITER(seg, cap, proc, timeout_ns) makes one
 * holding nothing. */
struct fixture_waiter {
	struct segment *seg;
	struct seg_cap *cap;
	int proc;
	uint8_t hold;
	uint64_t timeout_ns, waited_ns;
	enum cap_result r;
};
#define FIXTURE_WAITER(seg, cap, proc, timeout_ns) \
	{ (seg), (cap), (proc), HOLD_NONE, (timeout_ns), 0, CAP_ERROR }
static inline void *seg_fixture_wait(void *arg)
{
	struct fixture_waiter *w = arg;
	w->r = cap_acquire_slow(w->seg, w->cap, SEM_ACTIVE, &w->hold, (uint32_t)w->proc, 1,
	                        w->timeout_ns, 0, &w->waited_ns);
	return NULL;
}
#endif
