/*
 * test_cap_spin.c - the head waiter's foresight and spin (cap_spin.h), on a
 * private cap:
 *  - the predictor: nothing foretold before enough steady releases; steady
 *    holds raise the score and give the oldest holder's grant + the hold;
 *    releases far from the average lower it; a stale stamp zeroes it; too
 *    many slots, too far behind or holds too erratic foretell nothing;
 *  - the spin's bounds: a head whose slot does not come stops by the
 *    window's close, and never past its own `until`; it leaves no
 *    announcement behind;
 *  - the releaser's side: a spinning head is seen as spinning and takes a
 *    grant made without FUTEX_WAKE; a sleeping one is not (it needs the
 *    wake); an announcement left by a dead spinner is cleared by the next
 *    user of the entry before it sleeps;
 *  - through the real wait and release: two threads pass one slot 400
 *    times with holds steady enough to spin, never both holding it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cap.h"
#include "cap_spin.h"

static struct seg_cap cap;
static struct cap_spin *const sp = &cap.spin;
static struct seg_sem *const act = &cap.sems[SEM_ACTIVE];

static int setup(void **state)
{
	(void)state;
	cap_init_private(&cap);
	return 0;
}

/* max grants stamped `hold_us` ago, in turn, and one release measured per
 * round: a steady cap of `max` slots held `hold_us` each. */
static void steady(uint32_t max, uint32_t hold_us, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		uint32_t now = cap_spin_now_us();
		for (uint32_t k = 0; k < CAP_SPIN_RING; k++)
			sp->stamp_us[k] = now - hold_us;
		cap_spin_released_locked(sp, max);
		cap_spin_granted_locked(sp, sp->last_ticket + 1);
	}
}

static void predictor_needs_steady_holds(void **state)
{
	(void)state;
	uint32_t at, win;
	assert_false(cap_spin_predict(sp, 3, 0, &at, &win));      /* nothing yet */
	for (int i = 0; i < 3; i++)
		cap_spin_granted_locked(sp, (uint64_t)i + 1);
	assert_int_equal(sp->grants, 3);
	assert_int_equal(sp->last_ticket, 3);
	steady(3, 10000, CAP_SPIN_SCORE_ON - 1);
	assert_false(cap_spin_predict(sp, 3, 0, &at, &win));      /* score still short */
	steady(3, 10000, 4);
	assert_true(sp->score >= CAP_SPIN_SCORE_ON);
	assert_in_range(sp->hold_us, 10000, 10000 + 5000);        /* measured on a loaded box: late, never early */
	assert_true(cap_spin_predict(sp, 3, 0, &at, &win));
	/* the oldest of the last 3 grants + one hold */
	uint32_t oldest = sp->stamp_us[(sp->grants - 3) % CAP_SPIN_RING];
	assert_int_equal(at, oldest + sp->hold_us);
	assert_in_range(win, CAP_SPIN_WIN_MIN, CAP_SPIN_WIN_MAX);
	/* 4 places behind: the second-oldest's grant + two holds */
	assert_true(cap_spin_predict(sp, 3, 4, &at, &win));
	assert_int_equal(at, sp->stamp_us[(sp->grants - 3 + 1) % CAP_SPIN_RING] + 2 * sp->hold_us);
	/* too many slots to follow, or too far behind */
	assert_false(cap_spin_predict(sp, CAP_SPIN_RING + 1, 0, &at, &win));
	assert_false(cap_spin_predict(sp, 0, 0, &at, &win));
	assert_false(cap_spin_predict(sp, 3, 16 * 3, &at, &win));
	/* holds that vary by more than the widest window: not foretold */
	uint32_t dev = sp->dev_us;
	sp->dev_us = CAP_SPIN_WIN_MAX / 2 + 1;
	assert_false(cap_spin_predict(sp, 3, 0, &at, &win));
	sp->dev_us = CAP_SPIN_WIN_MAX / 2;
	assert_true(cap_spin_predict(sp, 3, 0, &at, &win));
	assert_int_equal(win, CAP_SPIN_WIN_MAX);
	sp->dev_us = dev;
}

static void misses_lower_the_score(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++)
		cap_spin_granted_locked(sp, (uint64_t)i + 1);
	steady(3, 10000, CAP_SPIN_SCORE_MAX + 4);
	assert_int_equal(sp->score, CAP_SPIN_SCORE_MAX);
	uint32_t before = sp->score;
	steady(3, 60000, 1);                         /* far off the average */
	assert_int_equal(sp->score, before - 2);
	steady(3, 60000, CAP_SPIN_SCORE_MAX);        /* erratic for a while: spins stop */
	uint32_t at, win;
	assert_true(sp->score < CAP_SPIN_SCORE_ON || sp->hold_us > 50000);
	/* a stamp older than any hold: stale, the score starts over */
	steady(3, 20 * 1000 * 1000, 1);
	assert_int_equal(sp->score, 0);
	assert_false(cap_spin_predict(sp, 3, 0, &at, &win));
}

/* A head queued at entry 0 behind a cap whose next release is foretold
 * `ahead_us` from now. */
static struct seg_waiter *foretold_head(int32_t ahead_us)
{
	for (int i = 0; i < 3; i++)
		cap_spin_granted_locked(sp, (uint64_t)i + 1);
	steady(3, 10000, CAP_SPIN_SCORE_MAX);
	uint32_t now = cap_spin_now_us();
	for (uint32_t k = 0; k < CAP_SPIN_RING; k++)
		sp->stamp_us[k] = now - sp->hold_us + (uint32_t)ahead_us;
	struct seg_waiter *w = &cap.waiters[0];
	w->ticket = sp->last_ticket + 1;
	w->sem = SEM_ACTIVE;
	__atomic_store_n(&w->state, WAITER_QUEUED, __ATOMIC_RELEASE);
	return w;
}

static void spin_ends_by_its_window(void **state)
{
	(void)state;
	struct seg_waiter *w = foretold_head(0);
	uint32_t at, win;
	assert_true(cap_spin_predict(sp, 3, 0, &at, &win));
	uint64_t t0 = cap_now_ns();
	assert_int_equal(cap_spin_wait(&cap, w, 3, w->futex, t0, t0 + 10 * 1000000000ull), 1);
	uint64_t took = cap_now_ns() - t0;
	/* it spun (it did not return at once), and stopped by the window's close;
	 * the upper bound is generous for a loaded machine, the spin itself is
	 * bounded by CAP_SPIN_MAX_US */
	assert_true(took >= (uint64_t)win * 1000 / 2);
	assert_true(took < 500 * 1000000ull);
	assert_int_equal(sp->spinner, 0);
	assert_int_equal(w->state, WAITER_QUEUED);
	/* the window has closed: no second spin, the caller sleeps as before */
	uint64_t t1 = cap_now_ns();
	assert_int_equal(cap_spin_wait(&cap, w, 3, w->futex, t1, t1 + 10 * 1000000000ull), 0);
}

static void spin_never_passes_until(void **state)
{
	(void)state;
	struct seg_waiter *w = foretold_head(0);
	uint64_t t0 = cap_now_ns();
	assert_int_equal(cap_spin_wait(&cap, w, 3, w->futex, t0, t0 + 1000), 1);
	assert_true(cap_now_ns() - t0 < 100 * 1000000ull);
	assert_int_equal(sp->spinner, 0);
	/* far ahead: asleep until the window opens, but not past `until` */
	w = foretold_head(5 * 1000 * 1000);
	t0 = cap_now_ns();
	assert_int_equal(cap_spin_wait(&cap, w, 3, w->futex, t0, t0 + 20 * 1000000ull), 1);
	uint64_t took = cap_now_ns() - t0;
	assert_true(took >= 19 * 1000000ull);
	assert_true(took < 2000 * 1000000ull);
}

struct granter {
	struct seg_waiter *w;
	int saw_spinning;
};

/* The releaser's part of grant_head_locked (cap.c) once the head spins:
 * CAS to GRANTED, then the word bumped, no FUTEX_WAKE. */
static void *grant_when_spinning(void *arg)
{
	struct granter *g = arg;
	uint64_t end = cap_now_ns() + 5 * 1000000000ull;
	while (!cap_spin_is_spinning(sp, 0) && cap_now_ns() < end)
		;
	g->saw_spinning = cap_spin_is_spinning(sp, 0);
	uint32_t queued = WAITER_QUEUED;
	__atomic_compare_exchange_n(&g->w->state, &queued, WAITER_GRANTED, 0,
	                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	__atomic_fetch_add(&g->w->futex, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void a_spinning_head_takes_a_grant_without_wake(void **state)
{
	(void)state;
	struct seg_waiter *w = foretold_head(50);
	struct granter g = { w, 0 };
	pthread_t t;
	uint32_t seen = w->futex;
	pthread_create(&t, NULL, grant_when_spinning, &g);
	/* each call spins at most its window; foretell again until the grant
	 * lands (the granter may be scheduled late) */
	int r = 0;
	for (int i = 0; i < 20000 && __atomic_load_n(&w->state, __ATOMIC_ACQUIRE) == WAITER_QUEUED; i++) {
		uint32_t now = cap_spin_now_us();
		for (uint32_t k = 0; k < CAP_SPIN_RING; k++)
			sp->stamp_us[k] = now - sp->hold_us + 50;
		uint64_t ns = cap_now_ns();
		r = cap_spin_wait(&cap, w, 3, seen, ns, ns + 10 * 1000000ull);
		if (r == 0)      /* preempted while it spun (a loaded machine): the spin
		                  * stood down and zeroed the score; arm it again */
			__atomic_store_n(&sp->score, CAP_SPIN_SCORE_MAX, __ATOMIC_RELAXED);
	}
	pthread_join(t, NULL);
	assert_true(g.saw_spinning);
	assert_int_equal(w->state, WAITER_GRANTED);
	assert_int_not_equal(w->futex, seen);
	assert_int_equal(sp->spinner, 0);
	/* a head that is not spinning is not taken for one */
	assert_false(cap_spin_is_spinning(sp, 0));
}

static void a_dead_spinners_announcement_is_cleared(void **state)
{
	(void)state;
	struct seg_waiter *w = &cap.waiters[5];
	w->ticket = 99;
	w->sem = SEM_ACTIVE;
	__atomic_store_n(&w->state, WAITER_QUEUED, __ATOMIC_RELEASE);
	sp->spinner = 6;                 /* its entry's last owner died spinning */
	assert_true(cap_spin_is_spinning(sp, 5));
	uint64_t now = cap_now_ns();
	/* nothing foretold: the caller sleeps, but not announced as spinning */
	assert_int_equal(cap_spin_wait(&cap, w, 3, w->futex, now, now + 1000000), 0);
	assert_int_equal(sp->spinner, 0);
	/* granted just before the clear: the caller must look, not sleep */
	sp->spinner = 6;
	__atomic_store_n(&w->state, WAITER_GRANTED, __ATOMIC_RELEASE);
	assert_int_equal(cap_spin_wait(&cap, w, 3, w->futex, now, now + 1000000), 1);
	assert_int_equal(sp->spinner, 0);
}

/* ---- through the real wait and release --------------------------------- */

static int inside;                   /* holders at once */
static int overlaps, failures;

static void *pass_slot(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200; i++) {
		uint8_t hold = HOLD_NONE;
		uint64_t waited;
		if (!sem_try_acquire(act, &hold)
		    && cap_acquire_slow(NULL, &cap, SEM_ACTIVE, &hold, 0, 0, 5000000000ull, 0,
		                        &waited) != CAP_OK) {
			__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (__atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST) != 1)
			__atomic_fetch_add(&overlaps, 1, __ATOMIC_RELAXED);
		uint64_t until = cap_now_ns() + 300 * 1000;  /* steady holds (awake: a
		                                              * sleep's end varies): the head learns to spin */
		while (cap_now_ns() < until)
			;
		__atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
		if (sem_release(act, &hold) == SEM_RELEASE_SLOW)
			cap_release_slow(NULL, &cap, SEM_ACTIVE, &hold);
	}
	return NULL;
}

static void slot_passes_through_spins(void **state)
{
	(void)state;
	cap_set_max(NULL, &cap, SEM_ACTIVE, 1);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, pass_slot, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(failures, 0);
	assert_int_equal(overlaps, 0);
	uint64_t w = __atomic_load_n(&act->word, __ATOMIC_SEQ_CST);
	assert_int_equal(sem_count(w), 0);
	assert_int_equal(sem_waiting(w), 0);
	assert_int_equal(sp->spinner, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(predictor_needs_steady_holds, setup),
		cmocka_unit_test_setup(misses_lower_the_score, setup),
		cmocka_unit_test_setup(spin_ends_by_its_window, setup),
		cmocka_unit_test_setup(spin_never_passes_until, setup),
		cmocka_unit_test_setup(a_spinning_head_takes_a_grant_without_wake, setup),
		cmocka_unit_test_setup(a_dead_spinners_announcement_is_cleared, setup),
		cmocka_unit_test_setup(slot_passes_through_spins, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
