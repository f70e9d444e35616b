/*
 * test_cap.c - the cap's semaphores on a private cap (scope = process):
 * the one-CAS fast paths against every state of the word (full, queued,
 * frozen, over a lowered max), first come first served with direct
 * hand-off, timeouts, nesting, raising and lowering a cap under waiters,
 * and passing a held slot to a sharer.  Crashes and audits need processes
 * and a segment: tests/integration/t_cap_crash.sh.
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
#include <unistd.h>

#include "cap.h"

static struct seg_cap cap;
static struct seg_sem *const act = &cap.sems[SEM_ACTIVE];

static int setup(void **state)
{
	(void)state;
	cap_init_private(&cap);
	return 0;
}

static uint32_t count(void) { return sem_count(__atomic_load_n(&act->word, __ATOMIC_SEQ_CST)); }
static uint32_t queued(void) { return sem_waiting(__atomic_load_n(&act->word, __ATOMIC_SEQ_CST)); }

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* Wait (at most 2 s) until n waiters are queued. */
static void wait_queued(uint32_t n)
{
	for (int i = 0; i < 2000 && queued() != n; i++)
		sleep_ms(1);
	assert_int_equal(queued(), n);
}

/* Give a held slot back the way the shim does: claim, fast CAS, or the lock. */
static void give_back(uint8_t *hold)
{
	enum sem_release_result r = sem_release(act, hold);
	assert_int_not_equal(r, SEM_RELEASE_NOT_MINE);
	if (r == SEM_RELEASE_SLOW)
		cap_release_slow(NULL, &cap, SEM_ACTIVE, hold);
	assert_int_equal(*hold, HOLD_NONE);
}

static void fast_paths_follow_the_word(void **state)
{
	(void)state;
	uint8_t a = HOLD_NONE, b = HOLD_NONE, c = HOLD_NONE;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 2);
	assert_true(sem_try_acquire(act, &a));
	assert_true(sem_try_acquire(act, &b));
	assert_int_equal(a, HOLD_HELD);
	assert_int_equal(count(), 2);
	/* full: refused, and the announcement is withdrawn */
	assert_false(sem_try_acquire(act, &c));
	assert_int_equal(c, HOLD_NONE);
	assert_int_equal(count(), 2);

	/* frozen (an audit runs): both fast paths step aside */
	__atomic_fetch_or(&act->word, SEM_FROZEN, __ATOMIC_SEQ_CST);
	assert_int_equal(sem_release(act, &b), SEM_RELEASE_SLOW);
	assert_int_equal(b, HOLD_RELEASING);
	assert_false(sem_try_acquire(act, &c));
	assert_int_equal(c, HOLD_NONE);
	__atomic_fetch_and(&act->word, ~SEM_FROZEN, __ATOMIC_SEQ_CST);
	cap_release_slow(NULL, &cap, SEM_ACTIVE, &b);
	assert_int_equal(b, HOLD_NONE);
	assert_int_equal(count(), 1);

	/* an audit came by between the word's read and the CAS (the epoch
	 * moved): the release goes by the lock, the count is the audit's */
	__atomic_fetch_add(&act->word, SEM_EPOCH_ONE, __ATOMIC_SEQ_CST);
	assert_true(sem_try_acquire(act, &b));       /* a new epoch is a word like any */
	assert_int_equal(count(), 2);
	assert_int_equal(sem_release(act, &b), SEM_RELEASE_DONE);
	assert_int_equal(count(), 1);
	assert_int_equal(sem_release(act, &b), SEM_RELEASE_NOT_MINE);   /* once */

	/* a queued waiter: no barging in, and a release goes by the lock (hand-off) */
	__atomic_fetch_add(&act->word, SEM_WAIT_ONE, __ATOMIC_SEQ_CST);
	assert_false(sem_try_acquire(act, &c));
	assert_int_equal(sem_release(act, &a), SEM_RELEASE_SLOW);
	/* ... unless the count is over a lowered cap: then it just goes */
	a = HOLD_HELD;
	__atomic_store_n(&act->max, 0, __ATOMIC_SEQ_CST);
	assert_int_equal(sem_release(act, &a), SEM_RELEASE_SLOW);   /* no cap: nothing is "over" */
	a = HOLD_HELD;
	__atomic_store_n(&act->word, 3 | SEM_WAIT_ONE, __ATOMIC_SEQ_CST);
	__atomic_store_n(&act->max, 2, __ATOMIC_SEQ_CST);
	assert_int_equal(sem_release(act, &a), SEM_RELEASE_DONE);
	assert_int_equal(count(), 2);
	assert_int_equal(queued(), 1);
	/* a release of nothing counted never goes below zero */
	__atomic_store_n(&act->word, SEM_WAIT_ONE, __ATOMIC_SEQ_CST);
	a = HOLD_HELD;
	assert_int_equal(sem_release(act, &a), SEM_RELEASE_SLOW);
	assert_int_equal(count(), 0);
}

static void no_cap_counts_without_limit(void **state)
{
	(void)state;
	uint8_t h[100];
	memset(h, HOLD_NONE, sizeof h);
	for (int i = 0; i < 100; i++)
		assert_true(sem_try_acquire(act, &h[i]));
	assert_int_equal(count(), 100);
	for (int i = 0; i < 100; i++)
		give_back(&h[i]);
	assert_int_equal(count(), 0);
}

static void claim_is_won_once(void **state)
{
	(void)state;
	uint8_t h = HOLD_NONE;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, &h));
	h = HOLD_RELEASING;                          /* the first releaser has claimed it */
	assert_int_equal(sem_release(act, &h), SEM_RELEASE_NOT_MINE);   /* the racing second */
	h = HOLD_HELD;
	assert_int_equal(sem_release(act, &h), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

/* ---- waiting ----------------------------------------------------------- */

struct waiter {
	pthread_t th;
	int id;
	uint8_t hold;
	uint64_t timeout_ns;
	enum cap_result result;
	uint64_t waited_ns;
	int done;
};
static int order[8], norder;
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;

static void *wait_one(void *arg)
{
	struct waiter *w = arg;
	w->result = cap_acquire_slow(NULL, &cap, SEM_ACTIVE, &w->hold, 0, w->id,
	                             w->timeout_ns, 0, &w->waited_ns);
	pthread_mutex_lock(&order_lock);
	order[norder++] = w->id;
	pthread_mutex_unlock(&order_lock);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void start(struct waiter *w, int id, uint64_t timeout_ns)
{
	memset(w, 0, sizeof *w);
	w->id = id;
	w->timeout_ns = timeout_ns;
	assert_int_equal(pthread_create(&w->th, NULL, wait_one, w), 0);
}

static void first_come_first_served(void **state)
{
	(void)state;
	uint8_t mine = HOLD_NONE;
	struct waiter w[4];
	norder = 0;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, &mine));
	for (int i = 0; i < 4; i++) {
		start(&w[i], i + 1, 10ull * 1000000000);
		wait_queued((uint32_t)i + 1);          /* queued in this order */
	}
	sleep_ms(20);
	assert_int_equal(norder, 0);                /* all still waiting */
	assert_int_equal(w[0].hold, HOLD_WAITING);
	give_back(&mine);
	/* the slot passes directly: each holder hands it to the next in line */
	for (int i = 0; i < 4; i++) {
		for (int k = 0; k < 2000 && !__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE); k++)
			sleep_ms(1);
		assert_int_equal(w[i].result, CAP_OK);
		assert_int_equal(w[i].hold, HOLD_HELD);
		assert_int_equal(count(), 1);
		pthread_join(w[i].th, NULL);
		give_back(&w[i].hold);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(order[i], i + 1);
	assert_int_equal(count(), 0);
	assert_int_equal(queued(), 0);
	assert_int_equal(act->waits, 4);
	assert_int_equal(act->timeouts, 0);
}

static void times_out_on_time(void **state)
{
	(void)state;
	uint8_t mine = HOLD_NONE;
	struct waiter w;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, &mine));
	start(&w, 1, 150 * 1000000ull);
	pthread_join(w.th, NULL);
	assert_int_equal(w.result, CAP_TIMEOUT);
	assert_true(w.waited_ns >= 150 * 1000000ull);
	assert_true(w.waited_ns < 1000 * 1000000ull);
	assert_int_equal(w.hold, HOLD_NONE);
	assert_int_equal(queued(), 0);
	assert_int_equal(count(), 1);
	assert_int_equal(act->timeouts, 1);
	give_back(&mine);
	assert_int_equal(count(), 0);
}

static void nested_never_waits(void **state)
{
	(void)state;
	uint8_t mine = HOLD_NONE, second = HOLD_NONE;
	uint64_t waited;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, &mine));
	assert_int_equal(cap_acquire_slow(NULL, &cap, SEM_ACTIVE, &second, 0, 1, 10ull * 1000000000,
	                                  1, &waited), CAP_NESTED);
	assert_int_equal(second, HOLD_NONE);
	assert_int_equal(queued(), 0);
	/* with room, the holder of another slot simply gets one */
	cap_set_max(NULL, &cap, SEM_ACTIVE, 2);
	assert_int_equal(cap_acquire_slow(NULL, &cap, SEM_ACTIVE, &second, 0, 1, 10ull * 1000000000,
	                                  1, &waited), CAP_OK);
	assert_int_equal(second, HOLD_HELD);
	assert_int_equal(count(), 2);
	give_back(&second);
	give_back(&mine);
}

static void raising_the_cap_admits_waiters(void **state)
{
	(void)state;
	uint8_t mine = HOLD_NONE;
	struct waiter w[2];
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, &mine));
	start(&w[0], 1, 10ull * 1000000000);
	wait_queued(1);
	start(&w[1], 2, 10ull * 1000000000);
	wait_queued(2);
	cap_set_max(NULL, &cap, SEM_ACTIVE, 2);    /* room for one more: the oldest */
	pthread_join(w[0].th, NULL);
	assert_int_equal(w[0].result, CAP_OK);
	assert_int_equal(count(), 2);
	assert_int_equal(queued(), 1);
	assert_false(__atomic_load_n(&w[1].done, __ATOMIC_ACQUIRE));
	/* lowering it below the count lets running work finish, admits nobody */
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	give_back(&mine);                           /* 2 -> 1: still not below the cap */
	sleep_ms(50);
	assert_false(__atomic_load_n(&w[1].done, __ATOMIC_ACQUIRE));
	assert_int_equal(count(), 1);
	give_back(&w[0].hold);                      /* below it: the next in line */
	pthread_join(w[1].th, NULL);
	assert_int_equal(w[1].result, CAP_OK);
	assert_int_equal(count(), 1);
	give_back(&w[1].hold);
	assert_int_equal(count(), 0);
	assert_int_equal(queued(), 0);
}

static void a_held_slot_passes_to_its_sharer(void **state)
{
	(void)state;
	uint8_t owner = HOLD_NONE, sharer = HOLD_SHARED, other = HOLD_NONE;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, &owner));
	assert_true(cap_hand_over(NULL, &cap, &owner, &sharer));
	assert_int_equal(owner, HOLD_NONE);
	assert_int_equal(sharer, HOLD_HELD);
	assert_int_equal(count(), 1);                /* the same slot, still counted once */
	/* only from a held slot, only to a sharer */
	assert_false(cap_hand_over(NULL, &cap, &owner, &sharer));
	assert_false(cap_hand_over(NULL, &cap, &sharer, &other));
	assert_int_equal(sharer, HOLD_HELD);
	give_back(&sharer);
	assert_int_equal(count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(fast_paths_follow_the_word, setup),
		cmocka_unit_test_setup(no_cap_counts_without_limit, setup),
		cmocka_unit_test_setup(claim_is_won_once, setup),
		cmocka_unit_test_setup(first_come_first_served, setup),
		cmocka_unit_test_setup(times_out_on_time, setup),
		cmocka_unit_test_setup(nested_never_waits, setup),
		cmocka_unit_test_setup(raising_the_cap_admits_waiters, setup),
		cmocka_unit_test_setup(a_held_slot_passes_to_its_sharer, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
