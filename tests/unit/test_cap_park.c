/*
 * test_cap_park.c - parked slots (cap.h, "Parked slots") in a real segment:
 *
 *  - park and un-park: a parked slot stays counted, SEM_SWEPT cleared by the
 *    first parker, and comes back with one CAS, the word untouched;
 *  - a sweep racing an un-park: exactly one of them wins, every time, and
 *    the count says which;
 *  - a waiter about to queue takes a parked slot at once (the sweep hands
 *    it over), and a parker that finds a waiter gives its slot to it;
 *  - a lowered max sweeps the parked slots; lanes or scope = cluster do;
 *  - the audit counts PARKED holds (and SEM_SWEPT stays clear), turns a dead
 *    sweeper's SWEEPING into NONE, and a dead process's PARKED hold is
 *    freed by the reaper (a child killed -9 while parked).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cap.h"
#include "policy.h"
#include "segment.h"
#include "procid.h"
#include "seg_fixture.h"

static struct segment seg;
static char name[64];
static struct seg_cap *cap;
static struct seg_sem *act;
static int proc_idx;
static struct seg_conn *conn[3];

static int setup(void **state)
{
	(void)state;
	proc_idx = seg_fixture_open(&seg, "unit-park", name, sizeof name);
	if (proc_idx < 0)
		return -1;
	for (int i = 0; i < 3; i++) {
		conn[i] = &seg.conns[seg_conn_claim(&seg, (uint32_t)proc_idx)];
		__atomic_store_n(&conn[i]->state, SLOT_LIVE, __ATOMIC_RELEASE);
	}
	cap = &seg.hdr->cap;
	cap->scope = SCOPE_HOST;
	act = &cap->sems[SEM_ACTIVE];
	return 0;
}

static int teardown(void **state) { (void)state; seg_fixture_close(&seg, name); return 0; }
static uint64_t word(void) { return __atomic_load_n(&act->word, __ATOMIC_SEQ_CST); }
static uint32_t count(void) { return sem_count(word()); }
static uint32_t queued(void) { return sem_waiting(word()); }
static uint8_t *hold_of(int i) { return &conn[i]->hold[SEM_ACTIVE]; }

/* conn i takes a slot and its statement ends: parked. */
static void take_and_park(int i)
{
	assert_true(sem_try_acquire(act, hold_of(i)));
	assert_true(cap_park(&seg, cap, hold_of(i)));
	assert_int_equal(*hold_of(i), HOLD_PARKED);
}

static void park_and_unpark(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 2);
	cap_sweep_parked(&seg, cap);
	assert_true(word() & SEM_SWEPT);                /* nobody parked */
	take_and_park(0);
	assert_int_equal(count(), 1);                   /* still counted */
	assert_false(word() & SEM_SWEPT);               /* the first parker cleared it */
	assert_true(sem_park_ok(word()));
	/* the next statement: one CAS on the hold, the word as it was */
	uint64_t w = word();
	assert_true(hold_unpark(hold_of(0)));
	assert_int_equal(*hold_of(0), HOLD_HELD);
	assert_int_equal(word(), w);
	/* parks again: the word untouched this time */
	assert_true(cap_park(&seg, cap, hold_of(0)));
	assert_int_equal(word(), w);
	/* not HELD: nothing to park */
	assert_false(cap_park(&seg, cap, hold_of(1)));
	/* closing it: as a sweep, the slot counted down */
	assert_int_equal(cap_unpark_release(&seg, cap, hold_of(0)), 1);
	assert_int_equal(*hold_of(0), HOLD_NONE);
	assert_int_equal(count(), 0);
}

/* ---- a sweep racing an un-park -------------------------------------------- */

static pthread_barrier_t go;
static int rounds_left;
static void *sweeper(void *arg)
{
	(void)arg;
	for (int i = 0; i < rounds_left; i++) {
		pthread_barrier_wait(&go);
		cap_sweep_parked(&seg, cap);
		pthread_barrier_wait(&go);
	}
	return NULL;
}

static void a_sweep_racing_an_unpark_one_wins(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);
	rounds_left = 2000;
	pthread_barrier_init(&go, NULL, 2);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, sweeper, NULL), 0);
	int unparked = 0, swept = 0;
	for (int i = 0; i < rounds_left; i++) {
		if (*hold_of(0) == HOLD_NONE)
			assert_true(sem_try_acquire(act, hold_of(0)));
		assert_true(cap_park(&seg, cap, hold_of(0)));
		assert_int_equal(count(), 1);
		pthread_barrier_wait(&go);
		int mine = hold_unpark(hold_of(0));
		pthread_barrier_wait(&go);         /* the sweep is over */
		uint8_t h = *hold_of(0);
		if (mine) {
			unparked++;
			assert_int_equal(h, HOLD_HELD);
			assert_int_equal(count(), 1);
		} else {
			swept++;
			assert_int_equal(h, HOLD_NONE);
			assert_int_equal(count(), 0);
		}
	}
	pthread_join(th, NULL);
	printf("un-park won %d, sweep won %d of %d\n", unparked, swept, rounds_left);
	assert_int_equal(unparked + swept, rounds_left);
	if (*hold_of(0) == HOLD_HELD)
		assert_int_equal(sem_release(act, hold_of(0)), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

/* ---- waiters -------------------------------------------------------------- */

static void a_waiter_takes_a_parked_slot_at_once(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);
	take_and_park(0);
	/* the cap is full (the parked slot): the fast path has no room */
	uint8_t other = HOLD_NONE;
	assert_false(sem_try_acquire(act, &other));
	struct fixture_waiter w = FIXTURE_WAITER(&seg, cap, proc_idx, 5000000000ull);
	seg_fixture_wait(&w);
	printf("waited for a parked slot: %.6f s\n", w.waited_ns / 1e9);
	assert_int_equal(w.r, CAP_OK);
	assert_true(w.waited_ns < 100000000ull);         /* not a slice, nor wait_timeout */
	assert_int_equal(w.hold, HOLD_HELD);
	assert_int_equal(*hold_of(0), HOLD_NONE);        /* swept */
	assert_int_equal(count(), 1);
	/* its connection's next statement finds it gone: takes anew (full now) */
	assert_false(hold_unpark(hold_of(0)));
	assert_false(sem_try_acquire(act, hold_of(0)));
	assert_int_equal(sem_release(act, &w.hold), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

/* A waiter already queued (behind a held slot): a parker sees it in the
 * word and its slot goes to the waiter, not into the parking. */
static void a_parker_that_sees_a_waiter_hands_its_slot_over(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);
	assert_true(sem_try_acquire(act, hold_of(0)));
	struct fixture_waiter w = FIXTURE_WAITER(&seg, cap, proc_idx, 5000000000ull);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, seg_fixture_wait, &w), 0);
	for (int i = 0; i < 2000 && queued() != 1; i++)
		seg_fixture_nap(1);
	assert_int_equal(queued(), 1);
	assert_false(sem_park_ok(word()));
	assert_true(cap_park(&seg, cap, hold_of(0)));
	pthread_join(th, NULL);
	assert_int_equal(*hold_of(0), HOLD_NONE);        /* not parked: given */
	assert_int_equal(w.r, CAP_OK);
	assert_int_equal(count(), 1);
	assert_int_equal(queued(), 0);
	assert_int_equal(sem_release(act, &w.hold), SEM_RELEASE_DONE);
}

/* ---- changes that take parked slots back ---------------------------------- */

static void a_lowered_max_sweeps_parked_slots(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 3);
	take_and_park(0);
	take_and_park(1);
	assert_int_equal(count(), 2);
	cap_set_max(&seg, cap, SEM_ACTIVE, 4);           /* raised: they stay */
	assert_int_equal(*hold_of(0), HOLD_PARKED);
	assert_int_equal(count(), 2);
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);           /* lowered: both swept */
	assert_int_equal(*hold_of(0), HOLD_NONE);
	assert_int_equal(*hold_of(1), HOLD_NONE);
	assert_int_equal(count(), 0);
	assert_true(word() & SEM_SWEPT);
	/* with the bit clear, a parker above the cap gives its slot back */
	assert_true(sem_try_acquire(act, hold_of(0)));
	__atomic_store_n(&act->max, 0, __ATOMIC_SEQ_CST);    /* as if no cap now */
	assert_true(cap_park(&seg, cap, hold_of(0)));
	assert_int_equal(*hold_of(0), HOLD_NONE);
	assert_int_equal(count(), 0);
}

static void lanes_or_cluster_take_parked_slots_back(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 2);
	take_and_park(0);
	/* lanes in force (a flag in the word): the next parker does not park,
	 * and a sweep takes the parked one back */
	__atomic_fetch_or(&act->word, SEM_LANES, __ATOMIC_SEQ_CST);
	assert_true(sem_try_acquire_max(act, hold_of(1), 0) == 0);   /* the plain CAS fails */
	cap_sweep_parked(&seg, cap);
	assert_int_equal(*hold_of(0), HOLD_NONE);
	assert_int_equal(count(), 0);
	__atomic_fetch_and(&act->word, ~SEM_LANES, __ATOMIC_SEQ_CST);
	/* scope = cluster: never parks */
	take_and_park(0);
	cap->scope = SCOPE_CLUSTER;
	cap_sweep_parked(&seg, cap);
	assert_int_equal(*hold_of(0), HOLD_NONE);
	assert_true(sem_try_acquire(act, hold_of(0)));
	assert_true(cap_park(&seg, cap, hold_of(0)));
	assert_int_equal(*hold_of(0), HOLD_NONE);        /* given back at once */
	assert_int_equal(count(), 0);
	cap->scope = SCOPE_HOST;
}

/* ---- the audit ------------------------------------------------------------ */

static void the_audit_counts_parked_holds(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 3);
	take_and_park(0);
	assert_true(sem_try_acquire(act, hold_of(1)));   /* one at work */
	__atomic_fetch_add(&act->word, 5, __ATOMIC_SEQ_CST);   /* a count gone wrong */
	cap_audit(&seg);
	assert_int_equal(count(), 2);                    /* the parked one counts */
	assert_int_equal(*hold_of(0), HOLD_PARKED);
	assert_false(word() & SEM_SWEPT);                /* and may stay parked */
	/* a sweeper that died holding the lock left SWEEPING: not counted */
	__atomic_store_n(hold_of(0), HOLD_SWEEPING, __ATOMIC_SEQ_CST);
	cap_audit(&seg);
	assert_int_equal(*hold_of(0), HOLD_NONE);
	assert_int_equal(count(), 1);
	assert_int_equal(sem_release(act, hold_of(1)), SEM_RELEASE_DONE);
	assert_int_equal(count(), 0);
}

/* A child process parks a slot and is killed -9: the reaper frees its
 * record, the recount drops the slot, and nothing sweeps it twice. */
static void a_killed_parker_is_freed_by_the_reaper(void **state)
{
	(void)state;
	cap_set_max(&seg, cap, SEM_ACTIVE, 1);
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int pi = seg_proc_claim(&seg);
		struct seg_proc *p = &seg.procs[pi];
		p->pid = getpid();
		p->starttime = procid_starttime(getpid());
		__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
		struct seg_conn *c = &seg.conns[seg_conn_claim(&seg, (uint32_t)pi)];
		__atomic_store_n(&c->state, SLOT_LIVE, __ATOMIC_RELEASE);
		int ok = sem_try_acquire(act, &c->hold[SEM_ACTIVE])
		         && cap_park(&seg, cap, &c->hold[SEM_ACTIVE])
		         && c->hold[SEM_ACTIVE] == HOLD_PARKED;
		if (write(pipefd[1], ok ? "P" : "F", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	char b = 0;
	assert_int_equal(read(pipefd[0], &b, 1), 1);
	assert_int_equal(b, 'P');
	assert_int_equal(count(), 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* the audit first (its process dead: the hold is no longer counted,
	 * and made NONE so that no sweep counts it down again) */
	cap_audit(&seg);
	assert_int_equal(count(), 0);
	cap_sweep_parked(&seg, cap);
	assert_int_equal(count(), 0);
	/* the reaper frees the dead record */
	assert_true(cap_reap(&seg, 0) >= 1);
	assert_int_equal(count(), 0);
	/* the slot is there for the taking */
	assert_true(sem_try_acquire(act, hold_of(0)));
	assert_int_equal(sem_release(act, hold_of(0)), SEM_RELEASE_DONE);
	close(pipefd[0]);
	close(pipefd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(park_and_unpark, setup, teardown),
		cmocka_unit_test_setup_teardown(a_sweep_racing_an_unpark_one_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(a_waiter_takes_a_parked_slot_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(a_parker_that_sees_a_waiter_hands_its_slot_over, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(a_lowered_max_sweeps_parked_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(lanes_or_cluster_take_parked_slots_back, setup, teardown),
		cmocka_unit_test_setup_teardown(the_audit_counts_parked_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(a_killed_parker_is_freed_by_the_reaper, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
