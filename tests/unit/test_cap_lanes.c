/*
 * test_cap_lanes.c - a lane's slot without the lock (cap_lanes.h), in a
 * real segment where audits run:
 *  - the CAS paths from threads: workers in three lanes take and give back
 *    slots (by CAS when they can, else under the lock), an exclusive
 *    worker comes and goes, an auditor recounts all the while, a reloader
 *    renumbers the lanes: never more than a lane's or the global max at
 *    once, nothing beside the exclusive one, every count 0 at the end, and
 *    most slots taken without the lock;
 *  - the order against an exclusive lane: from the moment its waiter
 *    queues no CAS admits anything, while it runs neither, afterwards at
 *    once again;
 *  - a holder killed with its lane's slot (kill -9): the audit gives the
 *    lane's count and the global one back;
 *  - an exclusive grant to a waiter stopped (SIGSTOP) before it claims it
 *    is taken back by the next waiter (cap_revoke.c): every lane goes on,
 *    the stopped one keeps its place and runs once it is continued.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cap_lanes.h"
#include "segment.h"
#include "procid.h"
#include "seg_fixture.h"
#include "policy.h"

#define WORKERS   6
#define ROUNDS    20000

static struct segment seg;
static char name[64];
static struct seg_cap *cap;
static struct seg_sem *act;
static int proc_idx;
static struct policy pol, pol2;

static void sleep_us(int us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };
	nanosleep(&ts, NULL);
}

static void lane(struct policy *p, int i, const char *lname, uint32_t max, int exclusive)
{
	snprintf(p->lanes[i].name, sizeof p->lanes[i].name, "%s", lname);
	p->lanes[i].max_active = max;
	p->lanes[i].exclusive = exclusive;
	if (p->nlanes <= i)
		p->nlanes = i + 1;
}

static struct seg_conn *new_conn(uint32_t proc)
{
	int c = seg_conn_claim(&seg, proc);
	assert_true(c >= 0);
	__atomic_store_n(&seg.conns[c].state, SLOT_LIVE, __ATOMIC_RELEASE);
	return &seg.conns[c];
}

static int setup(void **state)
{
	(void)state;
	proc_idx = seg_fixture_open(&seg, "unit-lanes", name, sizeof name);
	if (proc_idx < 0)
		return -1;
	cap = &seg.hdr->cap;
	act = &cap->sems[SEM_ACTIVE];
	/* "a" (2), "b" (1), the default, and "x" exclusive; global max 4 */
	policy_defaults(&pol);
	lane(&pol, 0, "a", 2, 0);
	lane(&pol, 1, "b", 1, 0);
	lane(&pol, 2, "x", 0, 1);
	/* the same lanes in another order: a reload renumbers them */
	policy_defaults(&pol2);
	lane(&pol2, 0, "x", 0, 1);
	lane(&pol2, 1, "b", 1, 0);
	lane(&pol2, 2, "a", 2, 0);
	cap_set_max(&seg, cap, SEM_ACTIVE, 4);
	cap_lanes_configure(&seg, cap, &pol, &seg);
	return 0;
}

static pid_t lingering;       /* a child a failed test left (stopped): killed */

static int teardown(void **state)
{
	(void)state;
	if (lingering > 0) {
		kill(lingering, SIGKILL);
		waitpid(lingering, NULL, 0);
		lingering = 0;
	}
	seg_fixture_close(&seg, name);
	return 0;
}

static uint64_t word(void) { return __atomic_load_n(&act->word, __ATOMIC_SEQ_CST); }
static uint32_t lane_count(const char *lname)
{
	unsigned i = cap_lane_find(cap, lname);
	return lw_count(__atomic_load_n(&cap->lanes.lane[i].word, __ATOMIC_SEQ_CST));
}

/* Take a slot in the lane of that name: by CAS if it can (*fast), else
 * under the lock; CAP_OK or what the wait came to. */
static enum cap_result take(struct seg_conn *c, const char *lname, int try_only, int *fast)
{
	unsigned gen = __atomic_load_n(&cap->lanes.gen, __ATOMIC_SEQ_CST);
	unsigned ln = cap_lane_find(cap, lname);
	uint8_t *hold = &c->hold[SEM_ACTIVE];
	if (lane_try_acquire(cap, ln, gen, hold, &c->lane_held)) {
		if (fast)
			(*fast)++;
		return CAP_OK;
	}
	uint64_t waited;
	return cap_lane_acquire(&seg, cap, lname, hold, &c->lane_held, (uint32_t)proc_idx, 1,
	                        5000000000ull, 0, try_only, &waited);
}

static void give(struct seg_conn *c)
{
	uint8_t *hold = &c->hold[SEM_ACTIVE];
	enum sem_release_result r = cap_release_active(cap, hold, &c->lane_held);
	assert_int_not_equal(r, SEM_RELEASE_NOT_MINE);
	if (r == SEM_RELEASE_SLOW)
		cap_lane_release(&seg, cap, hold, &c->lane_held);
	assert_int_equal(__atomic_load_n(hold, __ATOMIC_SEQ_CST), HOLD_NONE);
}

/* ---- the hammer --------------------------------------------------------- */

static int inflight_all, inflight_a, inflight_b, excl_in;   /* atomic */
static int over_all, over_a, over_b, beside_excl, excl_rounds, fast_total, stop;

struct worker { pthread_t th; const char *lane; struct seg_conn *c; int fast; };

static void *work(void *arg)
{
	struct worker *w = arg;
	int *mine = strcmp(w->lane, "a") == 0 ? &inflight_a : strcmp(w->lane, "b") == 0
	            ? &inflight_b : NULL;
	uint32_t mymax = mine == &inflight_a ? 2 : 1;
	for (int i = 0; i < ROUNDS; i++) {
		if (take(w->c, w->lane, 0, &w->fast) != CAP_OK)
			continue;
		if (__atomic_add_fetch(&inflight_all, 1, __ATOMIC_SEQ_CST) > 4)
			__atomic_fetch_add(&over_all, 1, __ATOMIC_RELAXED);
		if (mine && (uint32_t)__atomic_add_fetch(mine, 1, __ATOMIC_SEQ_CST) > mymax)
			__atomic_fetch_add(mine == &inflight_a ? &over_a : &over_b, 1, __ATOMIC_RELAXED);
		if (__atomic_load_n(&excl_in, __ATOMIC_SEQ_CST))
			__atomic_fetch_add(&beside_excl, 1, __ATOMIC_RELAXED);
		if (i % 64 == 0)
			sched_yield();
		if (mine)
			__atomic_sub_fetch(mine, 1, __ATOMIC_SEQ_CST);
		__atomic_sub_fetch(&inflight_all, 1, __ATOMIC_SEQ_CST);
		give(w->c);
	}
	__atomic_fetch_add(&fast_total, w->fast, __ATOMIC_RELAXED);
	return NULL;
}

static void *exclusive(void *arg)
{
	struct seg_conn *c = arg;
	while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
		if (take(c, "x", 0, NULL) == CAP_OK) {
			__atomic_store_n(&excl_in, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&inflight_all, __ATOMIC_SEQ_CST))
				__atomic_fetch_add(&beside_excl, 1, __ATOMIC_RELAXED);
			sleep_us(200);
			if (__atomic_load_n(&inflight_all, __ATOMIC_SEQ_CST))
				__atomic_fetch_add(&beside_excl, 1, __ATOMIC_RELAXED);
			__atomic_store_n(&excl_in, 0, __ATOMIC_SEQ_CST);
			give(c);
			excl_rounds++;
		}
		sleep_us(2000);
	}
	return NULL;
}

static int audits, reloads;
static void *auditor(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
		cap_audit(&seg);
		audits++;
		sleep_us(300);
	}
	return NULL;
}

static void *reloader(void *arg)
{
	(void)arg;
	while (!getenv("NORELOAD") && !__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
		cap_lanes_configure(&seg, cap, reloads % 2 ? &pol : &pol2, &seg);
		reloads++;
		sleep_us(5000);
	}
	cap_lanes_configure(&seg, cap, &pol, &seg);
	return NULL;
}

static void threads_hammer_the_cas_paths(void **state)
{
	(void)state;
	const char *lanes[WORKERS] = { "a", "a", "a", "b", "b", "" };
	struct worker w[WORKERS];
	pthread_t xt, at, rt;
	struct seg_conn *xc = new_conn((uint32_t)proc_idx);
	for (int i = 0; i < WORKERS; i++) {
		w[i] = (struct worker){ .lane = lanes[i], .c = new_conn((uint32_t)proc_idx) };
		assert_int_equal(pthread_create(&w[i].th, NULL, work, &w[i]), 0);
	}
	assert_int_equal(pthread_create(&xt, NULL, exclusive, xc), 0);
	assert_int_equal(pthread_create(&at, NULL, auditor, NULL), 0);
	assert_int_equal(pthread_create(&rt, NULL, reloader, NULL), 0);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(w[i].th, NULL);
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(xt, NULL);
	pthread_join(at, NULL);
	pthread_join(rt, NULL);
	printf("%d slots, %d by CAS; %d exclusive; %d audits, %d reloads; over: all %d a %d b %d; "
	       "beside the exclusive %d\n", WORKERS * ROUNDS, fast_total, excl_rounds, audits,
	       reloads, over_all, over_a, over_b, beside_excl);
	assert_int_equal(over_all, 0);
	assert_int_equal(over_a, 0);
	assert_int_equal(over_b, 0);
	assert_int_equal(beside_excl, 0);
	assert_true(excl_rounds > 0);
	assert_true(audits > 0 && reloads > 1);
	assert_true(fast_total > WORKERS * ROUNDS / 100);   /* the CAS path ran (how much: the load) */
	/* every count back to 0, nothing queued, no exclusive */
	cap_audit(&seg);
	assert_int_equal(sem_count(word()), 0);
	assert_int_equal(sem_waiting(word()), 0);
	assert_false(word() & SEM_EXCL);
	for (int i = 0; i < CAP_LANES; i++)
		assert_int_equal(lw_count(cap->lanes.lane[i].word), 0);
}

/* ---- the order against an exclusive lane --------------------------------- */

struct xwait { pthread_t th; struct seg_conn *c; enum cap_result r; };
static void *wait_exclusive(void *arg)
{
	struct xwait *x = arg;
	x->r = take(x->c, "x", 0, NULL);
	return NULL;
}

static void an_exclusive_waiter_stops_the_cas_at_once(void **state)
{
	(void)state;
	struct seg_conn *a = new_conn((uint32_t)proc_idx), *b = new_conn((uint32_t)proc_idx);
	int fast = 0;
	assert_int_equal(take(a, "a", 1, &fast), CAP_OK);
	assert_int_equal(fast, 1);                       /* by CAS */
	assert_int_equal(lane_count("a"), 1);
	struct xwait x = { .c = new_conn((uint32_t)proc_idx) };
	assert_int_equal(pthread_create(&x.th, NULL, wait_exclusive, &x), 0);
	for (int i = 0; i < 2000 && !__atomic_load_n(&cap->lanes.excl_waiting, __ATOMIC_SEQ_CST); i++)
		sleep_us(1000);
	assert_int_equal(cap->lanes.excl_waiting, 1);
	assert_true(word() & SEM_EXCL);
	/* queued: no CAS admits anything, nor the lock */
	assert_false(lane_try_acquire(cap, cap_lane_find(cap, "b"), cap->lanes.gen, &b->hold[SEM_ACTIVE],
	                              &b->lane_held));
	assert_int_equal(b->hold[SEM_ACTIVE], HOLD_NONE);
	assert_int_equal(b->lane_held, 0);
	assert_int_equal(take(b, "b", 1, NULL), CAP_BUSY);
	give(a);                                         /* nothing active: it goes */
	pthread_join(x.th, NULL);
	assert_int_equal(x.r, CAP_OK);
	assert_int_equal(cap->lanes.excl_active, 1);
	assert_int_equal(sem_count(word()), 1);
	assert_int_equal(take(b, "", 1, NULL), CAP_BUSY);   /* nothing beside it */
	give(x.c);
	assert_false(word() & SEM_EXCL);
	fast = 0;
	assert_int_equal(take(b, "b", 1, &fast), CAP_OK);   /* by CAS again */
	assert_int_equal(fast, 1);
	give(b);
	assert_int_equal(sem_count(word()), 0);
	assert_int_equal(lane_count("b"), 0);
}

/* ---- scope = cluster: the host's share of a lane, the gate --------------- */

static void a_cluster_hosts_lanes_follow_its_leader(void **state)
{
	(void)state;
	struct policy cl = pol;
	cl.scope = SCOPE_CLUSTER;
	cap->scope = SCOPE_CLUSTER;
	cap_lanes_configure(&seg, cap, &cl, &seg);
	unsigned la = cap_lane_find(cap, "a");
	struct seg_conn *a = new_conn((uint32_t)proc_idx), *b = new_conn((uint32_t)proc_idx);
	struct seg_conn *x = new_conn((uint32_t)proc_idx);
	int fast = 0;
	/* none of lane a's slots held here: nothing of it, by CAS or the lock */
	assert_int_equal(cap->lanes.lane[la].max, CAP_LANE_NONE);
	assert_true(cap->lanes.lane[la].word & LW_SLOW);
	assert_int_equal(take(a, "a", 1, &fast), CAP_BUSY);
	assert_int_equal(fast, 0);
	/* the leader holds one: one, by CAS */
	cap_lane_set_max(&seg, cap, la, 1);
	assert_int_equal(take(a, "a", 1, &fast), CAP_OK);
	assert_int_equal(fast, 1);
	assert_int_equal(take(b, "a", 1, NULL), CAP_BUSY);
	/* a process starting (the same table) keeps the host's share, not the policy's 2 */
	cap_lanes_configure(&seg, cap, &cl, &seg);
	assert_int_equal(cap->lanes.lane[la].max, 1);
	/* given back to none while held: the holder gives back as usual */
	cap_lane_set_max(&seg, cap, la, 0);
	give(a);
	assert_int_equal(lane_count("a"), 0);
	/* the exclusive lane: not while the gate is shut, even with nothing active */
	assert_int_equal(cap->lanes.gate, CAP_GATE_SHUT);
	assert_int_equal(take(x, "x", 1, NULL), CAP_BUSY);
	cap_lanes_set_gate(&seg, cap, CAP_GATE_OPEN);
	/* the host admits nothing else (closed), the exclusive lane still */
	cap_set_closed(&seg, cap, SEM_ACTIVE, 1);
	assert_int_equal(take(b, "", 1, NULL), CAP_BUSY);
	assert_int_equal(take(x, "x", 1, NULL), CAP_OK);
	give(x);
	cap_set_closed(&seg, cap, SEM_ACTIVE, 0);
	assert_int_equal(take(b, "", 1, NULL), CAP_OK);
	give(b);
	assert_int_equal(sem_count(word()), 0);
}

/* ---- kill -9 ----------------------------------------------------------- */

static void a_killed_holders_lane_slot_comes_back(void **state)
{
	(void)state;
	/* a process record of a child that took a slot in lane "a" by CAS,
	 * then was killed with SIGKILL */
	int dead = seg_proc_claim(&seg);
	assert_true(dead >= 0);
	struct seg_conn *c = new_conn((uint32_t)dead);
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t child = fork();
	if (child == 0) {
		char ok = lane_try_acquire(cap, cap_lane_find(cap, "a"), cap->lanes.gen,
		                           &c->hold[SEM_ACTIVE], &c->lane_held) ? 'y' : 'n';
		if (write(pipefd[1], &ok, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	struct seg_proc *p = &seg.procs[dead];
	p->pid = child;
	p->starttime = procid_starttime(child);
	__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
	c->pid = child;
	char ok = 0;
	assert_int_equal(read(pipefd[0], &ok, 1), 1);
	assert_int_equal(ok, 'y');
	assert_int_equal(lane_count("a"), 1);
	assert_int_equal(sem_count(word()), 1);
	cap_audit(&seg);                                 /* alive: it keeps its slot */
	assert_int_equal(lane_count("a"), 1);
	assert_int_equal(sem_count(word()), 1);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	cap_audit(&seg);
	assert_int_equal(lane_count("a"), 0);
	assert_int_equal(sem_count(word()), 0);
	/* and the lane's slots are there to take, by CAS */
	struct seg_conn *x = new_conn((uint32_t)proc_idx), *y = new_conn((uint32_t)proc_idx);
	int fast = 0;
	assert_int_equal(take(x, "a", 1, &fast), CAP_OK);
	assert_int_equal(take(y, "a", 1, &fast), CAP_OK);
	assert_int_equal(fast, 2);
	give(x);
	give(y);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* ---- a stopped waiter's grant (cap_revoke.c) ---------------------------- */

static char task_state(pid_t pid)
{
	pid_t of = 0;
	return procid_task_state(pid, &of);
}

static void a_stopped_exclusive_grant_is_taken_back(void **state)
{
	(void)state;
	struct seg_conn *a = new_conn((uint32_t)proc_idx), *b = new_conn((uint32_t)proc_idx);
	int other = seg_proc_claim(&seg);
	assert_true(other >= 0);
	struct seg_conn *xc = new_conn((uint32_t)other);
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(take(a, "a", 1, NULL), CAP_OK);
	/* a child process queues for the exclusive lane (its record its own) */
	pid_t child = fork();
	if (child == 0) {
		struct seg_proc *p = &seg.procs[other];
		p->pid = getpid();
		p->starttime = procid_starttime(getpid());
		__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
		xc->pid = getpid();
		uint64_t waited;
		enum cap_result r = cap_lane_acquire(&seg, cap, "x", &xc->hold[SEM_ACTIVE],
		                                     &xc->lane_held, (uint32_t)other, 0,
		                                     5000000000ull, 0, 0, &waited);
		char ok = r == CAP_OK && cap->lanes.excl_active == 1 ? 'y' : 'n';
		if (r == CAP_OK && cap_release_active(cap, &xc->hold[SEM_ACTIVE], &xc->lane_held)
		                   == SEM_RELEASE_SLOW)
			cap_lane_release(&seg, cap, &xc->hold[SEM_ACTIVE], &xc->lane_held);
		_exit(write(pipefd[1], &ok, 1) == 1 ? 0 : 1);
	}
	lingering = child;
	for (int i = 0; i < 2000 && !__atomic_load_n(&cap->lanes.excl_waiting, __ATOMIC_SEQ_CST); i++)
		sleep_us(1000);
	assert_int_equal(cap->lanes.excl_waiting, 1);
	kill(child, SIGSTOP);
	for (int i = 0; i < 2000 && task_state(child) != 'T'; i++)
		sleep_us(1000);
	assert_int_equal(task_state(child), 'T');
	give(a);                         /* the exclusive grant goes to the stopped child */
	assert_int_equal(cap->lanes.excl_active, 1);
	assert_true(word() & SEM_EXCL);
	/* a waiter of another lane: held back until it takes the grant back */
	uint64_t t0 = cap_now_ns();
	assert_int_equal(take(b, "b", 0, NULL), CAP_OK);
	double ms = (double)(cap_now_ns() - t0) / 1e6;
	printf("a waiter behind the stopped exclusive grant: in after %.0f ms\n", ms);
	assert_true(ms >= 390 && ms < 2000);   /* 400 ms unclaimed (stamps in whole ms) */
	assert_int_equal(cap->lanes.excl_active, 0);
	assert_int_equal(cap->lanes.excl_waiting, 0);   /* revoked: holds nobody back */
	assert_false(word() & SEM_EXCL);
	assert_int_equal(sem_count(word()), 1);
	assert_int_equal(sem_waiting(word()), 1);       /* the child, in line again */
	assert_int_equal(lane_count("x"), 0);
	cap_audit(&seg);                 /* the revoked entry counted once, as waiting */
	assert_int_equal(sem_count(word()), 1);
	assert_int_equal(sem_waiting(word()), 1);
	assert_int_equal(cap->lanes.nwaiting, 1);
	give(b);
	/* continued: its turn back, it runs alone */
	kill(child, SIGCONT);
	char ok = 0;
	assert_int_equal(read(pipefd[0], &ok, 1), 1);
	assert_int_equal(ok, 'y');
	int st = 0;
	assert_int_equal(waitpid(child, &st, 0), child);
	lingering = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(sem_count(word()), 0);
	assert_int_equal(sem_waiting(word()), 0);
	assert_false(word() & SEM_EXCL);
	assert_int_equal(cap->lanes.excl_waiting + cap->lanes.excl_active + cap->lanes.nwaiting, 0);
	close(pipefd[0]);
	close(pipefd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(an_exclusive_waiter_stops_the_cas_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(a_killed_holders_lane_slot_comes_back, setup, teardown),
		cmocka_unit_test_setup_teardown(a_stopped_exclusive_grant_is_taken_back, setup, teardown),
		cmocka_unit_test_setup_teardown(a_cluster_hosts_lanes_follow_its_leader, setup, teardown),
		cmocka_unit_test_setup_teardown(threads_hammer_the_cas_paths, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
