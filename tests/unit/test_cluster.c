/*
 * test_cluster.c - the pure parts of scope = cluster: a host's fair share
 * (share.c: water-filling, the remainder going round, never more than max
 * in all, no host that wants left without a slot for long), the keys
 * (lease.h), and a closed semaphore (SEM_CLOSED: a host with no lease
 * grants nothing, whatever max says, and admits its queue when it opens).
 * The leader, the coordinator and the hosts: tests/integration/t_cluster_*.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cap.h"
#include "lease.h"
#include "share.h"

#define ROT 250

static uint32_t share(const struct share_host *h, int n, int me, uint32_t max, uint64_t ms)
{
	return share_of(h, n, me, max, ms, ROT);
}

static void test_alone_takes_all(void **state)
{
	(void)state;
	struct share_host h[1] = { { 0, 1 } };
	assert_int_equal(share(h, 1, 0, 4, 0), 4);
	h[0].slots = 4;
	h[0].wants = 0;
	assert_int_equal(share(h, 1, 0, 4, 0), 4);
}

/* Three hosts that all want, four slots: one each, and the fourth goes
 * round: each host has it for one turn in three. */
static void test_remainder_goes_round(void **state)
{
	(void)state;
	struct share_host h[3] = { { 2, 1 }, { 1, 1 }, { 1, 1 } };
	int extra[3] = { 0, 0, 0 };
	for (uint64_t turn = 0; turn < 3; turn++) {
		uint32_t sum = 0;
		for (int me = 0; me < 3; me++) {
			uint32_t s = share(h, 3, me, 4, turn * ROT + 7);
			assert_true(s == 1 || s == 2);
			extra[me] += s == 2;
			sum += s;
		}
		assert_int_equal(sum, 4);
	}
	for (int me = 0; me < 3; me++)
		assert_int_equal(extra[me], 1);
}

/* A host that wants nothing more keeps what it holds when that is below
 * the even split; the others share the rest. */
static void test_satisfied_host_keeps_its_own(void **state)
{
	(void)state;
	struct share_host h[3] = { { 1, 0 }, { 3, 1 }, { 0, 1 } };
	assert_int_equal(share(h, 3, 0, 6, 0), 1);
	/* 5 left for two hosts: 2 and 3, in turn */
	uint32_t a = share(h, 3, 1, 6, 0), b = share(h, 3, 2, 6, 0);
	assert_int_equal(a + b, 5);
	assert_true(a >= 2 && b >= 2);
}

/* A host holding everything, not wanting, while another wants: it must
 * come down to the even split, so the other gets its half. */
static void test_hoarder_comes_down(void **state)
{
	(void)state;
	struct share_host h[2] = { { 4, 0 }, { 0, 1 } };
	assert_int_equal(share(h, 2, 0, 4, 0), 2);
	assert_int_equal(share(h, 2, 1, 4, 0), 2);
}

/* A newcomer that wants gets its half from a host holding everything (who
 * wants more too); one that wants nothing needs nothing. */
static void test_newcomer(void **state)
{
	(void)state;
	struct share_host h[2] = { { 4, 1 }, { 0, 1 } };
	assert_int_equal(share(h, 2, 1, 4, 0), 2);
	assert_int_equal(share(h, 2, 0, 4, 0), 2);
	h[1].wants = 0;
	assert_int_equal(share(h, 2, 1, 4, 0), 0);
	assert_int_equal(share(h, 2, 0, 4, 0), 4);
}

/* Random censuses: the shares of one census never add up to more than
 * max, and a host that wants gets at least one slot within `hosts` turns
 * when there are at least as many slots as contenders... or its turn of
 * the remainder when there are fewer. */
static void test_random_never_over_max(void **state)
{
	(void)state;
	srand(13);
	for (int round = 0; round < 20000; round++) {
		int n = 1 + rand() % 8;
		uint32_t max = (uint32_t)(1 + rand() % 12);
		struct share_host h[8];
		for (int i = 0; i < n; i++)
			h[i] = (struct share_host){ (uint32_t)(rand() % 5), rand() % 2 };
		for (uint64_t turn = 0; turn < (uint64_t)n; turn++) {
			uint32_t sum = 0;
			for (int me = 0; me < n; me++)
				sum += share(h, n, me, max, turn * ROT);
			assert_true(sum <= max);
		}
		for (int me = 0; me < n; me++) {
			if (!h[me].wants)
				continue;
			uint32_t best = 0;
			for (uint64_t turn = 0; turn < (uint64_t)n; turn++) {
				uint32_t s = share(h, n, me, max, turn * ROT);
				best = s > best ? s : best;
			}
			assert_true(best >= 1);   /* no host that wants starves */
		}
	}
}

static void test_keys(void **state)
{
	(void)state;
	assert_int_equal(lease_classid("myapp"), lease_classid("myapp"));
	assert_true(lease_classid("myapp") != lease_classid("myapp2"));
	assert_true(lease_classid("x") <= 0x7fffffffu);
	assert_true(LEASE_KEY_LANE(0, 0) > (1u << 23));
	assert_true(LEASE_KEY_LANE(62, (1u << 24) - 1) < LEASE_KEY_WANT);
	assert_string_equal(lease_state_word(LEASE_OPEN), "fail-open");
	assert_string_equal(lease_state_word(LEASE_CLOSED), "fail-closed");
}

/* ---- SEM_CLOSED on a private cap ----------------------------------------- */

static struct seg_cap cap;

struct waiter_arg { enum cap_result r; uint8_t hold; };
static void *waiter(void *p)
{
	struct waiter_arg *a = p;
	uint64_t waited;
	a->r = cap_acquire_slow(NULL, &cap, SEM_ACTIVE, &a->hold, 0, 1, 2000000000ull, 0, &waited);
	return NULL;
}

static void test_closed_grants_nothing(void **state)
{
	(void)state;
	cap_init_private(&cap);
	struct seg_sem *s = &cap.sems[SEM_ACTIVE];
	uint8_t h1 = HOLD_NONE, h2 = HOLD_NONE;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 2);
	assert_true(sem_try_acquire(s, &h1));            /* one held */
	cap_set_closed(NULL, &cap, SEM_ACTIVE, 1);
	assert_false(sem_try_acquire(s, &h2));           /* closed: room, but no */
	uint64_t waited;
	assert_int_equal(cap_acquire_slow(NULL, &cap, SEM_ACTIVE, &h2, 0, 1, 20000000ull, 0, &waited),
	                 CAP_TIMEOUT);
	/* A release while closed gives the slot back, to nobody. */
	struct waiter_arg a = { CAP_ERROR, HOLD_NONE };
	pthread_t th;
	pthread_create(&th, NULL, waiter, &a);
	for (int i = 0; i < 200 && sem_waiting(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST)) == 0; i++)
		usleep(1000);
	assert_int_equal(sem_waiting(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST)), 1);
	enum sem_release_result rr = sem_release(s, &h1);
	assert_int_not_equal(rr, SEM_RELEASE_NOT_MINE);
	if (rr == SEM_RELEASE_SLOW)
		cap_release_slow(NULL, &cap, SEM_ACTIVE, &h1);
	assert_int_equal(sem_count(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST)), 0);
	usleep(20000);
	assert_int_equal(a.hold, HOLD_WAITING);           /* still waiting */
	/* Opening admits the queue. */
	cap_set_closed(NULL, &cap, SEM_ACTIVE, 0);
	pthread_join(th, NULL);
	assert_int_equal(a.r, CAP_OK);
	assert_int_equal(a.hold, HOLD_HELD);
	assert_int_equal(sem_count(__atomic_load_n(&s->word, __ATOMIC_SEQ_CST)), 1);
	assert_true(sem_try_acquire(s, &h2));            /* open again: the second slot */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alone_takes_all),
		cmocka_unit_test(test_remainder_goes_round),
		cmocka_unit_test(test_satisfied_host_keeps_its_own),
		cmocka_unit_test(test_hoarder_comes_down),
		cmocka_unit_test(test_newcomer),
		cmocka_unit_test(test_random_never_over_max),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_closed_grants_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
