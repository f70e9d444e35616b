/*
 * reload.c - notice a changed policy file within a second, without a
 * system call per statement.
 *
 * Every statement already reads the TSC (work_fast_stamp, track_sent); when
 * it passes hot.next_tick (about every half second) one thread of the process stats the
 * policy file, and if its identity, size or times changed and have then
 * stayed the same for POLICY_SETTLE_MS (a file written in place is taken
 * only once the write is over: policy_settle_look, policy_file.c), loads it
 * whole and swaps it in: the last good policy stays in force when the new
 * one does not load, and the error shows in the log and in `pqshim stat`.
 * Caps live in the shared segment, so the first process to notice sets
 * them for all.
 *
 * With routing, a thread of the shim's, the ticker, ticks four times a
 * second even in a process that sends nothing (a switch is noticed by
 * idle programs too) and then drains (drain.c) -- in a process that runs
 * threads of its own already.  A single-threaded one stays so: the
 * segment's drainer process ticks and drains for it (drainer.c), and its
 * own ticks (at its calls) start the ticker should it start threads later.
 */
#include "reload.h"
#include "drain.h"
#include "drainer.h"
#include "log.h"
#include "readonly.h"
#include "record.h"
#include "route.h"
#include "segwatch.h"
#include "shim.h"
#include "slots.h"
#include "startup.h"

#include <string.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#define TICK_NS 500000000ull        /* look at the file twice a second */
#define TICKER_PERIOD_MS 250

static int ticking;                 /* a thread is looking (atomic) */
static uint64_t tick_ticks0, tick_mono0;
static struct stat policy_st;       /* the file as it was last read */
static int ticker;                  /* the ticker thread runs (atomic) */

static struct policy_settle settle;  /* a change seen, not quiet long enough yet */

/* A waiter between its slices (slots.c): the tick, if one is due. */
static void tick_if_due(void)
{
	if (clock_ticks() >= __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED))
		shim_tick();
}

/* Remember what the file looked like when it was (last) read. */
void reload_note_file(void)
{
	slots_on_slice(tick_if_due);
	if (g.policy_path[0] && stat(g.policy_path, &policy_st) != 0)
		memset(&policy_st, 0, sizeof policy_st);
	/* Read at start while being written: read it again once it is quiet. */
	struct stat none = { 0 };
	if (policy_st.st_ino && policy_settle_look(&settle, &none, &policy_st,
	        clock_ns(CLOCK_MONOTONIC), (int64_t)clock_ns(CLOCK_REALTIME), NULL) != POLICY_FILE_SETTLED) {
		memset(&policy_st, 0, sizeof policy_st);
		slots_caps_wait(1);   /* ... and leave the shared caps alone until then */
	}
	tick_ticks0 = clock_ticks();
	tick_mono0 = clock_ns(CLOCK_MONOTONIC);
	/* Until the TSC is calibrated, assume at most 4 GHz: a first look
	 * within 0.5 s at the latest. */
	__atomic_store_n(&hot.next_tick, tick_ticks0 + 2 * TICK_NS, __ATOMIC_RELAXED);
}

static void reload_policy(const struct stat *looked)
{
	struct policy p;
	struct policy_errors errs;
	struct stat st;
	int rc = policy_load(g.policy_path, &p, &errs);
	/* Written to during the read: not what settled; look again. */
	if (looked && (stat(g.policy_path, &st) != 0 || !policy_stat_same(&st, looked)))
		return;
	if (rc != 0) {
		char msg[SEG_ERROR_MAX];
		snprintf(msg, sizeof msg, "%s", errs.count ? errs.msg[0] : g.policy_path);
		if (strcmp(msg, g.policy_error) != 0) {
			snprintf(g.policy_error, sizeof g.policy_error, "%s", msg);
			shim_log(LOG_ERR, "%s; keeping the previous policy", msg);
			record_publish_policy();
		}
		return;
	}
	if (strcmp(p.segment, g.pol.segment) != 0 && startup_move_segment(&p) != 0)
		shim_log(LOG_WARNING, "[shim] segment changed: programs keep their segment until restarted");
	if (p.scope != g.pol.scope) {
		/* slots taken from one cap must go back to the same one */
		shim_log(LOG_WARNING, "[cap] scope changed: programs keep their scope until restarted");
		p.scope = g.pol.scope;
	}
	int caps_waited = slots_caps_waiting();
	slots_caps_wait(0);      /* settled: its caps are for everyone */
	if (!g.policy_error[0] && !caps_waited && memcmp(&p, &g.pol, sizeof p) == 0)
		return;              /* the same policy again (say, re-read after start) */
	/* Numbers are read one at a time (either value is fine); the strings
	 * routing reads are copied under this sequence count (route.c). */
	__atomic_fetch_add(&g.pol_seq, 1, __ATOMIC_ACQ_REL);
	g.pol = p;
	__atomic_fetch_add(&g.pol_seq, 1, __ATOMIC_RELEASE);
	g.policy_error[0] = '\0';
	g.policy_ok = 1;
	slots_configure();
	if (route_enabled())
		ticker_start();
	record_publish_policy();
	shim_log(LOG_INFO, "policy %s reloaded", g.policy_path);
}

static void tick(void)
{
	if (__atomic_exchange_n(&ticking, 1, __ATOMIC_ACQUIRE))
		return;                  /* another thread is looking */
	uint64_t ticks = clock_ticks(), mono = clock_ns(CLOCK_MONOTONIC);
	uint64_t span = mono - tick_mono0;
	double per_ns = span > 1000000 ? (double)(ticks - tick_ticks0) / (double)span : 4.0;
	__atomic_store_n(&hot.next_tick, ticks + (uint64_t)(per_ns * TICK_NS), __ATOMIC_RELAXED);

	struct stat st;
	if (g.policy_path[0] && g.pid == getpid()) {
		int gone = stat(g.policy_path, &st) != 0;
		uint64_t wait_ms = 0;
		if (gone ? policy_st.st_ino != 0
		         : policy_settle_look(&settle, &policy_st, &st, mono,
		                              (int64_t)clock_ns(CLOCK_REALTIME), &wait_ms) == POLICY_FILE_SETTLED) {
			if (gone)
				memset(&policy_st, 0, sizeof policy_st);
			else
				policy_st = st;
			reload_policy(gone ? NULL : &st);
		}
		if (wait_ms && wait_ms * 1000000 < TICK_NS)   /* settling: look again sooner */
			__atomic_store_n(&hot.next_tick, ticks + (uint64_t)(per_ns * (double)wait_ms * 1e6),
			                 __ATOMIC_RELAXED);
		readonly_update();   /* the flag file may come or go at any time */
	}
	if (g.pid == getpid()) {
		segwatch_check();   /* truncated or replaced under us? */
		slots_check_lost(); /* slots of sessions the server ended */
		drain_signal_report();
		if (route_enabled() && !ticker_running())
			ticker_start();  /* threads started since, or the drainer gone */
	}
	__atomic_store_n(&ticking, 0, __ATOMIC_RELEASE);
}

/* Under the depth mark: the shim is at work, and a signal handler of the
 * shim's that interrupts a tick in a system call (drain.c) leaves it be,
 * as it does inside libpq. */
void shim_tick(void)
{
	OWN(tick());
}

static void ticker_loop(void)
{
	drain_begin();
	for (;;) {
		struct timespec ts = { 0, TICKER_PERIOD_MS * 1000000L };
		nanosleep(&ts, NULL);
		if (g.pid != getpid() || g.disabled)
			return;          /* the process is exiting */
		shim_tick();         /* policy file and flag file, even when idle */
		drain_step();
	}
}

static void *ticker_main(void *arg)
{
	(void)arg;
	/* Everything this thread does in libpq is the shim's, not the
	 * program's: libpq's calls to its own exports must pass straight
	 * through the wrappers, never be tracked, capped or routed. */
	OWN(ticker_loop());
	return NULL;
}

void ticker_start(void)
{
	if (drainer_self())
		return;
	if (__libc_single_threaded) {
		/* No thread of its own: none of ours either (drainer.c). */
		drain_signal_install();
		drainer_ensure();
		return;
	}
	/* The thread must not count as one of the program's. */
	if (shim_thread_start(&ticker, ticker_main) != 0)
		shim_log(LOG_WARNING, "could not start the drainer thread: idle connections "
		         "will move at their next use only");
}

int ticker_running(void)
{
	return __atomic_load_n(&ticker, __ATOMIC_RELAXED);
}

void reload_after_fork(void)
{
	ticker = 0;              /* threads do not survive fork() */
	ticking = 0;
}
