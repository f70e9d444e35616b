/*
 * test_cap_audit.c - the cap in a real segment, where audits run: an audit
 * never waits on a thread that waits on it, and a wait ends by its deadline
 * even while the cap's lock is held by someone else.
 *
 *  - a releaser blocked on the cap's lock with its hold RELEASING, while
 *    the lock's holder dies: the releaser gets the lock with EOWNERDEAD,
 *    audits, and finds its own hold RELEASING.  An audit that waited for
 *    announced CASes to finish waited there ~1 s (for itself); now it
 *    counts the hold, and the release lands at once, the count right.
 *  - a waiter whose deadline passes while another thread holds the lock
 *    returns CAP_TIMEOUT by its deadline, not when the lock comes back.
 *  - a release behind a lock held past the fixed bound gives up, and the
 *    waiter behind it gets the slot from the next audit.
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
#include "segment.h"
#include "procid.h"
#include "seg_fixture.h"

static struct segment seg;
static char name[64];
static struct seg_cap *cap;
static struct seg_sem *act;
static struct seg_conn *conn;
static int proc_idx;

static uint64_t now_ns(void)
{
	return cap_now_ns();
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A segment with this process recorded, live, and one connection of it. */
static int setup(void **state)
{
	(void)state;
	proc_idx = seg_fixture_open(&seg, "unit-audit", name, sizeof name);
	if (proc_idx < 0)
		return -1;
	int c = seg_conn_claim(&seg, (uint32_t)proc_idx);
	conn = &seg.conns[c];
	__atomic_store_n(&conn->state, SLOT_LIVE, __ATOMIC_RELEASE);
	cap = &seg.hdr->cap;
	act = &cap->sems[SEM_ACTIVE];
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	seg_fixture_close(&seg, name);
	return 0;
}

static uint32_t count(void) { return sem_count(__atomic_load_n(&act->word, __ATOMIC_SEQ_CST)); }
static uint32_t queued(void) { return sem_waiting(__atomic_load_n(&act->word, __ATOMIC_SEQ_CST)); }

/* ---- helpers running in threads ---------------------------------------- */

static pthread_barrier_t locked;
static void *lock_and_die(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&cap->lock);
	pthread_barrier_wait(&locked);
	sleep_ms(100);           /* the releaser blocks on the lock meanwhile */
	return NULL;             /* exits holding it: EOWNERDEAD for the next */
}

static void wait_queued(uint32_t n)
{
	for (int i = 0; i < 2000 && queued() != n; i++)
		sleep_ms(1);
	assert_int_equal(queued(), n);
}

/* max_active = 1, its slot held by our connection (the hold returned), w
 * queued for it in thread *wt. */
static uint8_t *held_and_waited_for(struct fixture_waiter *w, pthread_t *wt)
{
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);
	uint8_t *hold = &conn->hold[SEM_ACTIVE];
	assert_true(sem_try_acquire(act, hold));
	assert_int_equal(pthread_create(wt, NULL, seg_fixture_wait, w), 0);
	wait_queued(1);
	return hold;
}

/* ---- the tests ---------------------------------------------------------- */

static void audit_never_waits_on_a_blocked_releaser(void **state)
{
	(void)state;
	/* someone waits: the release must hand over under the lock */
	struct fixture_waiter w = FIXTURE_WAITER(&seg, cap, proc_idx, 5000000000ull);
	pthread_t wt, lt;
	uint8_t *hold = held_and_waited_for(&w, &wt);
	/* the lock's holder dies while we wait for the lock, RELEASING */
	pthread_barrier_init(&locked, NULL, 2);
	assert_int_equal(pthread_create(&lt, NULL, lock_and_die, NULL), 0);
	pthread_barrier_wait(&locked);
	assert_int_equal(sem_release(act, hold), SEM_RELEASE_SLOW);
	assert_int_equal(*hold, HOLD_RELEASING);
	uint64_t t0 = now_ns();
	cap_release_slow(&seg, cap, SEM_ACTIVE, hold);   /* EOWNERDEAD: audits first */
	uint64_t took = now_ns() - t0;
	pthread_join(lt, NULL);
	pthread_join(wt, NULL);
	printf("release behind a dead lock holder: %.3f s\n", took / 1e9);
	assert_true(took < 500000000ull);                /* ~0.1 s: the dead holder's nap */
	assert_int_equal(*hold, HOLD_NONE);
	assert_int_equal(w.r, CAP_OK);                   /* the slot passed to the waiter */
	assert_int_equal(w.hold, HOLD_HELD);
	assert_int_equal(count(), 1);
	assert_int_equal(queued(), 0);
	assert_int_equal(sem_release(act, &w.hold), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

static pthread_barrier_t held;
static void *hold_lock_a_while(void *arg)
{
	int ms = *(int *)arg;
	pthread_mutex_lock(&cap->lock);
	pthread_barrier_wait(&held);
	sleep_ms(ms);
	pthread_mutex_unlock(&cap->lock);
	return NULL;
}

static void a_wait_ends_by_its_deadline_even_behind_the_lock(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);
	uint8_t mine = HOLD_NONE;
	assert_true(sem_try_acquire(act, &mine));
	/* queued first, then the lock is held far past the waiter's deadline */
	struct fixture_waiter w = FIXTURE_WAITER(&seg, cap, proc_idx, 300000000ull);
	pthread_t wt, lt;
	assert_int_equal(pthread_create(&wt, NULL, seg_fixture_wait, &w), 0);
	wait_queued(1);
	int ms = 1500;
	pthread_barrier_init(&held, NULL, 2);
	assert_int_equal(pthread_create(&lt, NULL, hold_lock_a_while, &ms), 0);
	pthread_barrier_wait(&held);
	pthread_join(wt, NULL);
	printf("wait of 0.3 s behind a lock held 1.5 s: %.3f s, result %d\n", w.waited_ns / 1e9, w.r);
	assert_int_equal(w.r, CAP_TIMEOUT);
	assert_true(w.waited_ns < 300000000ull + 100000000ull);
	assert_int_equal(w.hold, HOLD_NONE);
	pthread_join(lt, NULL);
	/* a timed-out waiter is out of the count once the lock is free */
	struct fixture_waiter w2 = FIXTURE_WAITER(&seg, cap, proc_idx, 1000000ull);
	seg_fixture_wait(&w2);                                   /* takes the lock: sweeps */
	assert_int_equal(w2.r, CAP_TIMEOUT);
	assert_int_equal(queued(), 0);
	assert_int_equal(count(), 1);
	assert_int_equal(sem_release(act, &mine), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

/* The lock held past the fixed bound (its holder stopped): a release gives
 * up after ~1 s, leaving its slot to the next audit, which a waiter runs
 * at its next slice once the lock is free: the slot passes to it. */
static void a_release_behind_a_stuck_lock_lands_by_the_next_audit(void **state)
{
	(void)state;
	struct fixture_waiter w = FIXTURE_WAITER(&seg, cap, proc_idx, 6000000000ull);
	pthread_t wt, lt;
	uint8_t *hold = held_and_waited_for(&w, &wt);
	int ms = 1600;
	pthread_barrier_init(&held, NULL, 2);
	assert_int_equal(pthread_create(&lt, NULL, hold_lock_a_while, &ms), 0);
	pthread_barrier_wait(&held);
	assert_int_equal(sem_release(act, hold), SEM_RELEASE_SLOW);   /* someone waits */
	uint64_t t0 = now_ns();
	cap_release_slow(&seg, cap, SEM_ACTIVE, hold);
	uint64_t took = now_ns() - t0;
	printf("release behind a lock held 1.6 s: %.3f s\n", took / 1e9);
	assert_true(took >= 900000000ull && took < 1500000000ull);
	assert_int_equal(*hold, HOLD_NONE);
	assert_int_equal(__atomic_load_n(&cap->audit_due, __ATOMIC_ACQUIRE), 1);
	pthread_join(lt, NULL);
	pthread_join(wt, NULL);
	printf("the waiter behind it: %.3f s, result %d\n", w.waited_ns / 1e9, w.r);
	assert_int_equal(w.r, CAP_OK);
	assert_true(w.waited_ns < 2500000000ull);        /* the lock's 1.6 s and a slice */
	assert_int_equal(count(), 1);
	assert_int_equal(queued(), 0);
	assert_int_equal(sem_release(act, &w.hold), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

/* The audit decides half-done holds at once, and their owners learn it. */
static void audit_judges_half_done_holds(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 2);
	uint8_t *hold = &conn->hold[SEM_ACTIVE];
	/* a release whose CAS landed, caught before its hold says so */
	assert_true(sem_try_acquire(act, hold));
	__atomic_store_n(hold, HOLD_RELEASING, __ATOMIC_SEQ_CST);
	__atomic_fetch_sub(&act->word, 1, __ATOMIC_SEQ_CST);
	cap_audit(&seg);                                 /* counts it: owed back */
	assert_int_equal(*hold, HOLD_RELEASING_COUNTED);
	assert_int_equal(count(), 1);
	cap_release_slow(&seg, cap, SEM_ACTIVE, hold);   /* what sem_release's SLOW does */
	assert_int_equal(count(), 0);
	/* an acquire caught before it confirmed: not counted, and it knows */
	__atomic_store_n(hold, HOLD_ACQUIRING, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&act->word, 1, __ATOMIC_SEQ_CST);
	cap_audit(&seg);
	assert_int_equal(*hold, HOLD_NONE);
	assert_int_equal(count(), 0);
	/* a fast path that read the word before an audit does not CAS after it */
	uint64_t w0 = __atomic_load_n(&act->word, __ATOMIC_SEQ_CST);
	cap_audit(&seg);
	assert_int_not_equal(sem_epoch(w0), sem_epoch(__atomic_load_n(&act->word, __ATOMIC_SEQ_CST)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(audit_never_waits_on_a_blocked_releaser, setup, teardown),
		cmocka_unit_test_setup_teardown(a_wait_ends_by_its_deadline_even_behind_the_lock, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(audit_judges_half_done_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(a_release_behind_a_stuck_lock_lands_by_the_next_audit,
		                                setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
