/*
 * test_lanes.c - the cap's lanes on a private cap (cap.h, "Lanes"): a
 * lane's own max inside the global one, the order of admission (priority,
 * then first come), an exclusive waiter holding new work back and running
 * alone, a lane's timeout, and a reload that renames and removes lanes.
 * The same code across processes: tests/integration/t_lane_*.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cap_lanes.h"
#include "policy.h"

static struct seg_cap cap;
static struct policy pol;

static void lane(int i, const char *name, uint32_t max, int exclusive, int priority)
{
	snprintf(pol.lanes[i].name, sizeof pol.lanes[i].name, "%s", name);
	pol.lanes[i].max_active = max;
	pol.lanes[i].exclusive = exclusive;
	pol.lanes[i].priority = priority;
	if (pol.nlanes <= i)
		pol.nlanes = i + 1;
}

static int setup(void **state)
{
	(void)state;
	cap_init_private(&cap);
	policy_defaults(&pol);
	return 0;
}

static void configure(uint32_t global)
{
	cap_set_max(NULL, &cap, SEM_ACTIVE, global ? global : CAP_UNCAPPED);
	cap_lanes_configure(NULL, &cap, &pol, NULL);
}

struct hold { uint8_t hold, lane_held; };

/* 1: taken at once, 0: it would have to wait. */
static int try_take(struct hold *h, unsigned ln)
{
	uint64_t waited;
	enum cap_result r = cap_lane_acquire(NULL, &cap, cap.lanes.lane[ln].name, &h->hold, &h->lane_held, 0, 1, 0, 0, 1,
	                                     &waited);
	assert_true(r == CAP_OK || r == CAP_BUSY);
	return r == CAP_OK;
}

static void give(struct hold *h)
{
	cap_lane_release(NULL, &cap, &h->hold, &h->lane_held);
	assert_int_equal(h->hold, HOLD_NONE);
	assert_int_equal(h->lane_held, 0);
}

static uint32_t count(void)
{
	return sem_count(__atomic_load_n(&cap.sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST));
}

static void fast_paths_fail_while_lanes_are_in_force(void **state)
{
	(void)state;
	lane(0, "reports", 1, 0, 0);
	configure(4);
	uint8_t h = HOLD_NONE;
	assert_false(sem_try_acquire(&cap.sems[SEM_ACTIVE], &h));
	assert_int_equal(h, HOLD_NONE);
	pol.nlanes = 0;
	configure(4);
	assert_true(sem_try_acquire(&cap.sems[SEM_ACTIVE], &h));
	assert_int_equal(count(), 1);
}

static void a_lane_max_nests_in_the_global_cap(void **state)
{
	(void)state;
	lane(0, "reports", 1, 0, 0);
	configure(3);
	struct hold r1 = { 0 }, r2 = { 0 }, d[3] = { { 0 } };
	assert_int_equal(cap_lane_find(&cap, "reports"), 1);
	assert_true(try_take(&r1, 1));
	assert_false(try_take(&r2, 1));          /* the lane is full */
	assert_true(try_take(&d[0], 0));         /* the default lane is not */
	assert_true(try_take(&d[1], 0));
	assert_false(try_take(&d[2], 0));        /* the global cap is: 3 */
	assert_int_equal(count(), 3);
	assert_int_equal(lw_count(cap.lanes.lane[1].word), 1);
	assert_int_equal(lw_count(cap.lanes.lane[0].word), 2);
	give(&r1);
	assert_true(try_take(&d[2], 0));
	assert_false(try_take(&r2, 1));          /* global full again */
	give(&d[0]);
	assert_true(try_take(&r2, 1));
}

struct waiter {
	pthread_t th;
	unsigned lane;
	struct hold h;
	enum cap_result r;
	struct timespec done;
};

static void *wait_one(void *arg)
{
	struct waiter *w = arg;
	uint64_t waited;
	w->r = cap_lane_acquire(NULL, &cap, cap.lanes.lane[w->lane].name, &w->h.hold, &w->h.lane_held, 0, 1,
	                        2000000000ull, 0, 0, &waited);
	clock_gettime(CLOCK_MONOTONIC, &w->done);
	return NULL;
}

static void wait_queued(uint32_t n)
{
	for (int i = 0; i < 2000; i++) {
		if (__atomic_load_n(&cap.lanes.nwaiting, __ATOMIC_SEQ_CST) == n)
			return;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	fail_msg("never %u lane waiters", n);
}

static void higher_priority_goes_first_then_first_come(void **state)
{
	(void)state;
	lane(0, "web", 0, 0, 10);
	configure(1);
	struct hold h = { 0 };
	assert_true(try_take(&h, 0));
	struct waiter w[4] = { { .lane = 0 }, { .lane = 1 }, { .lane = 0 }, { .lane = 1 } };
	for (int i = 0; i < 4; i++) {
		pthread_create(&w[i].th, NULL, wait_one, &w[i]);
		wait_queued((uint32_t)i + 1);
	}
	/* one slot: each release admits exactly one, in order 1, 3, 0, 2 */
	int order[4] = { 1, 3, 0, 2 };
	struct hold *held = &h;
	for (int k = 0; k < 4; k++) {
		give(held);
		pthread_join(w[order[k]].th, NULL);
		assert_int_equal(w[order[k]].r, CAP_OK);
		held = &w[order[k]].h;
	}
	give(held);
	assert_int_equal(count(), 0);
}

static void an_exclusive_waiter_holds_new_work_back_and_runs_alone(void **state)
{
	(void)state;
	lane(0, "migrations", 0, 1, 0);
	configure(0);
	struct hold a = { 0 }, b = { 0 }, c = { 0 };
	assert_true(try_take(&a, 0));
	assert_true(try_take(&b, 0));
	struct waiter x = { .lane = 1 };
	pthread_create(&x.th, NULL, wait_one, &x);
	wait_queued(1);
	assert_false(try_take(&c, 0));           /* held back behind the exclusive waiter */
	give(&a);
	assert_int_equal(__atomic_load_n(&x.h.hold, __ATOMIC_SEQ_CST), HOLD_WAITING);
	give(&b);                                /* nothing active: it goes */
	pthread_join(x.th, NULL);
	assert_int_equal(x.r, CAP_OK);
	assert_int_equal(cap.lanes.excl_active, 1);
	assert_false(try_take(&c, 0));           /* nothing beside it */
	give(&x.h);
	assert_int_equal(cap.lanes.excl_active, 0);
	assert_true(try_take(&c, 0));
}

static void a_lane_times_out_and_lets_the_others_go(void **state)
{
	(void)state;
	lane(0, "migrations", 0, 1, 0);
	configure(0);
	struct hold a = { 0 }, c = { 0 };
	assert_true(try_take(&a, 0));
	uint64_t waited;
	struct hold x = { 0 };
	enum cap_result r = cap_lane_acquire(NULL, &cap, cap.lanes.lane[1].name, &x.hold, &x.lane_held, 0, 1,
	                                     100000000ull, 0, 0, &waited);
	assert_int_equal(r, CAP_TIMEOUT);
	assert_true(waited >= 100000000ull);
	assert_int_equal(cap.lanes.lane[1].timeouts, 1);
	assert_int_equal(cap.lanes.excl_waiting, 0);
	assert_true(try_take(&c, 0));            /* no longer held back */
}

static void a_reload_keeps_holders_by_name(void **state)
{
	(void)state;
	lane(0, "a", 1, 0, 0);
	lane(1, "b", 1, 0, 0);
	configure(0);
	struct hold hb = { 0 };
	assert_true(try_take(&hb, 2));
	assert_int_equal(lw_count(cap.lanes.lane[2].word), 1);
	/* "b" alone now, lane 1: the hold is found by name... (a private cap
	 * without records cannot recount: the statistics move, the count is
	 * the releases') */
	pol.nlanes = 0;
	lane(0, "b", 1, 0, 0);
	configure(0);
	assert_int_equal(cap_lane_find(&cap, "b"), 1);
	assert_int_equal(cap_lane_find(&cap, "a"), 0);
	assert_int_equal(cap.lanes.lane[1].acquired, 1);
	give(&hb);
	assert_int_equal(count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(fast_paths_fail_while_lanes_are_in_force, setup),
		cmocka_unit_test_setup(a_lane_max_nests_in_the_global_cap, setup),
		cmocka_unit_test_setup(higher_priority_goes_first_then_first_come, setup),
		cmocka_unit_test_setup(an_exclusive_waiter_holds_new_work_back_and_runs_alone, setup),
		cmocka_unit_test_setup(a_lane_times_out_and_lets_the_others_go, setup),
		cmocka_unit_test_setup(a_reload_keeps_holders_by_name, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
