/*
 * fill.c - a segment with many tracked connections, for the benchmarks of
 * cost as the work grows (tests/bench/run.sh, section 9).
 *
 *   fill NAME PROCS CONNS [REAPS]
 *
 * Attaches (creating it if missing) the segment NAME as the shim would,
 * starts PROCS processes (this one and PROCS - 1 children) that each claim
 * a process record of their own (a live pid and start time, so the reaper
 * keeps them) and CONNS / PROCS connection records, idle, filled as the
 * shim fills them (server, application name, counters).  Then it times
 * the reaper over that segment as a waiter between slices, a connecting
 * process or `pqshim stat` runs it (cap_reap: every live process record
 * judged from /proc, nothing dead to free): REAPS calls (default 200),
 * CLOCK_MONOTONIC around each, and prints "reap_us MEDIAN MAX PROCS
 * CONNS".  Then "ready", and it keeps the records until stdin closes;
 * then every process releases its records and exits.
 */
#include "cap.h"
#include "clock.h"
#include "procid.h"
#include "segment.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* One process's share: its own record and n connections.  0, or -1 when
 * the tables are full. */
static int fill_one(struct segment *seg, int n, int *procp, int *conns)
{
	int pi = seg_proc_claim(seg);
	if (pi < 0)
		return -1;
	struct seg_proc *p = &seg->procs[pi];
	p->pid = getpid();
	p->ppid = getppid();
	p->starttime = procid_starttime(p->pid);
	p->uid = getuid();
	p->started_ns = clock_ns(CLOCK_REALTIME);
	snprintf(p->program, sizeof p->program, "fill");
	__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
	*procp = pi;
	for (int k = 0; k < n; k++) {
		int ci = seg_conn_claim(seg, (uint32_t)pi);
		if (ci < 0)
			return -1;
		struct seg_conn *c = &seg->conns[ci];
		c->tid = c->last_tid = getpid();
		c->cstate = CS_IDLE;
		c->status = CST_OK;
		c->target = TGT_DIRECT;
		c->queries = 10;
		c->xacts = 3;
		c->opened_ns = clock_ns(CLOCK_REALTIME);
		c->last_used = clock_ticks();
		snprintf(c->server, sizeof c->server, "host=/tmp port=5432 dbname=fill%d", k);
		snprintf(c->appname, sizeof c->appname, "fill");
		__atomic_store_n(&c->state, SLOT_LIVE, __ATOMIC_RELEASE);
		__atomic_fetch_add(&p->connections, 1, __ATOMIC_RELAXED);
		conns[k] = ci;
	}
	return 0;
}

static void unfill(struct segment *seg, int pi, const int *conns, int n)
{
	for (int k = 0; k < n; k++)
		if (conns[k] >= 0)
			seg_conn_release(seg, conns[k], 0);
	if (pi >= 0)
		seg_proc_release(seg, pi);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fill NAME PROCS CONNS [REAPS]\n");
		return 2;
	}
	int procs = atoi(argv[2]), total = atoi(argv[3]);
	int reaps = argc > 4 ? atoi(argv[4]) : 200;
	if (procs < 1 || total < 0 || reaps < 1)
		return 2;
	struct segment seg;
	char why[512];
	struct seg_want want = { .name = argv[1], .create = 1 };
	enum seg_verdict v = seg_attach(&seg, &want, why, sizeof why);
	if (v != SEG_OK && v != SEG_OTHER_SIZE) {
		fprintf(stderr, "fill: %s\n", why);
		return 1;
	}
	int per = total / procs, ready[2], done[2];
	if (pipe(ready) || pipe(done))
		return 1;
	for (int i = 1; i < procs; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			int *conns = calloc((size_t)per + 1, sizeof *conns), pi = -1;
			close(ready[0]);
			close(done[1]);
			char ok = fill_one(&seg, per, &pi, conns) == 0 ? 'y' : 'n';
			if (write(ready[1], &ok, 1) != 1)
				_exit(1);
			char b;
			while (read(done[0], &b, 1) > 0)
				;
			unfill(&seg, pi, conns, per);
			_exit(0);
		}
	}
	close(ready[1]);
	close(done[0]);
	int mine = total - per * (procs - 1), pi = -1;
	int *conns = calloc((size_t)mine + 1, sizeof *conns);
	int bad = fill_one(&seg, mine, &pi, conns) != 0;
	for (int i = 1; i < procs; i++) {
		char ok = 'n';
		if (read(ready[0], &ok, 1) != 1 || ok != 'y')
			bad = 1;
	}
	if (bad)
		fprintf(stderr, "fill: the segment's tables are full (raise [shim] max_processes / max_tracked)\n");
	uint64_t *us = calloc((size_t)reaps, sizeof *us);
	for (int i = 0; i < reaps; i++) {
		uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
		cap_reap(&seg, cap_now_ns() + 1000000000ull);
		us[i] = clock_ns(CLOCK_MONOTONIC) - t0;
	}
	qsort(us, (size_t)reaps, sizeof *us, cmp_u64);
	printf("reap_us %.1f %.1f %d %d\nready\n", us[reaps / 2] / 1e3, us[reaps - 1] / 1e3, procs,
	       total);
	fflush(stdout);
	char b;
	while (read(0, &b, 1) > 0)
		;
	close(done[1]);
	while (wait(NULL) > 0)
		;
	unfill(&seg, pi, conns, mine);
	seg_detach(&seg);
	return bad;
}
