/*
 * startup.c - start-up, threads, fork and exit (see startup.h).
 *
 * Lazy: the first call into libpq loads the policy, attaches the segment
 * and registers the process; each thread's first call counts it in; a fork
 * child re-registers as its own process and adopts its parent's
 * connections; at exit, connections never closed are reported and their
 * records given back.
 *
 * Invariant: every PGconn the program holds (opened by a wrapped connect in
 * this process or inherited from a parent) has exactly one struct conn in
 * g.map, whose rec is either its own LIVE record in the segment or its
 * private `local` copy.
 */
#include "startup.h"
#include "cap_lock.h"
#include "defer.h"
#include "lease.h"
#include "log.h"
#include "readonly.h"
#include "record.h"
#include "reload.h"
#include "segwatch.h"
#include "slots.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

struct shim g = { .lock = PTHREAD_MUTEX_INITIALIZER, .proc_idx = -1 };
struct shim_hot hot = { .map_epoch = 1, .deferrals = DEFER_UNINIT };
TLS struct thread_state t;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t thread_key;   /* its destructor counts threads out */

/* A relative PQSHIM_POLICY is relative to where the program started: made
 * absolute before main() can change directory (the shim itself starts at
 * the first libpq call).  Nothing done for an absolute one. */
static char start_policy[POLICY_STR_MAX], start_policy_as_given[POLICY_STR_MAX];

__attribute__((constructor)) static void policy_path_keep(void)
{
	const char *path = getenv("PQSHIM_POLICY");
	if (path && *path && *path != '/' && strlen(path) < sizeof start_policy_as_given
	    && policy_absolute_path(path, start_policy, sizeof start_policy))
		strcpy(start_policy_as_given, path);
}

static void load_policy(void)
{
	const char *path = getenv("PQSHIM_POLICY");
	if (path && start_policy[0] && strcmp(path, start_policy_as_given) == 0)
		path = start_policy;
	policy_defaults(&g.pol);
	g.policy_ok = 1;
	if (!path || !*path)
		return;
	/* Absolute now: a program that changes directory later still finds
	 * it (symlinks kept: a re-pointed link is followed). */
	if (!policy_absolute_path(path, g.policy_path, sizeof g.policy_path))
		snprintf(g.policy_path, sizeof g.policy_path, "%s", path);
	path = g.policy_path;
	struct policy_errors errs;
	struct policy p;
	if (policy_load(path, &p, &errs) == 0) {
		g.pol = p;
		return;
	}
	policy_recover_segment(path, g.pol.segment, sizeof g.pol.segment);
	snprintf(g.policy_error, sizeof g.policy_error, "%s", errs.count ? errs.msg[0] : path);
	if (policy_recover_on_error(path) == ONERROR_FAIL_OPEN) {
		/* the program runs, tracked, with nothing enforced */
		g.pol.on_error = ONERROR_FAIL_OPEN;
		shim_log(LOG_ERR, "%s; nothing enforced until it is fixed (on_error = fail-open)",
		         g.policy_error);
		return;
	}
	g.policy_ok = 0;
	shim_log(LOG_ERR, "%s; refusing connections (on_error = fail-closed)", g.policy_error);
}

/* after_fork = protect: every connection the child inherits gets its
 * socket replaced with /dev/null, at once (before the child can run any
 * libpq call, wrapped or not).  The parent's socket stays the parent's:
 * whatever the child's libpq writes (a statement, the Terminate of its
 * PQfinish, a TLS close_notify) goes nowhere, and nothing it reads can be
 * the parent's.  Only async-signal-safe calls here. */
static void protect_inherited(void *value, void *arg)
{
	struct conn *c = value;
	int nullfd = *(int *)arg;
	int sock = real.PQsocket(c->pg);
	if (sock >= 0 && nullfd >= 0)
		dup2(nullfd, sock);
}

static void at_fork_prepare(void) { pthread_mutex_lock(&g.lock); }
static void at_fork_parent(void) { pthread_mutex_unlock(&g.lock); }
static void at_fork_child(void)
{
	pthread_mutex_unlock(&g.lock);
	/* The child must not write its parent's records: the first call in
	 * the child (t.tid == 0) re-registers everything as its own. */
	t.tid = 0;
	thread_caches_forget();
	if (g.pol.after_fork == FORK_PROTECT) {
		int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
		connmap_each(&g.map, protect_inherited, &nullfd);
		if (nullfd >= 0)
			close(nullfd);
	}
	reload_after_fork();
	slots_after_fork();      /* adopt() clears the inherited holds */
	defer_after_fork();
	lease_after_fork();      /* the parent's coordinator session stays the parent's */
}

static void thread_gone(void *arg)
{
	(void)arg;
	if (g.pid != getpid() || !t.tid)
		return;
	slots_thread_exit(t.tid);
	__atomic_fetch_sub(&g.proc->threads, 1, __ATOMIC_RELAXED);
}

static void leak_report_at_exit(void);

void shim_init(void)
{
	pthread_mutex_lock(&init_lock);
	if (hot.state == SHIM_READY) {
		pthread_mutex_unlock(&init_lock);
		return;
	}
	if (getauxval(AT_SECURE))
		g.disabled = 1;         /* setuid: stay out of the way */
	if (real_resolve() != 0)
		g.disabled = 1;
	if (!pqint_init())
		__atomic_fetch_or(&hot.deferrals, DEFER_NOLAYOUT, __ATOMIC_RELEASE);
	load_policy();
	shim_log_target(g.pol.log);

	char name[POLICY_STR_MAX];
	policy_segment_name(&g.pol, g.policy_path[0] ? g.policy_path : NULL, name, sizeof name);
	if (!g.disabled)
		segwatch_attach(name);
	cap_lock_blocker_clear();
	if (g.seg.hdr) {
		cap_reap(&g.seg, 0);     /* the lock by a short bound (cap_lock.h) */
		/* Records of this very pid are from before an exec(): libpq's
		 * sockets are close-on-exec, so those connections are gone. */
		cap_release_pid(&g.seg, getpid());
		record_publish_policy();
	}
	record_register_process(0);
	if (g.seg.hdr && g.proc_idx < 0)
		segwatch_table_full();
	reload_note_file();      /* first: was the file read while it changed? */
	slots_configure();
	char held[96];
	if (cap_lock_blocker(held, sizeof held))
		shim_log(LOG_WARNING, "%s: start-up went on without it (the dead's slots are "
		         "counted again by the next process to take it)", held);
	readonly_update();
	pthread_key_create(&thread_key, thread_gone);
	pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
	atexit(leak_report_at_exit);
	__atomic_store_n(&hot.state, SHIM_READY, __ATOMIC_RELEASE);
	__atomic_fetch_sub(&hot.deferrals, DEFER_UNINIT, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&init_lock);
}

/*
 * A process that started on an unusable policy file took the segment it
 * could guess (from the path, when the file named none it could read); when
 * a good policy names another, it moves there.  Only while it has refused
 * every connection (fail-closed): it then holds no connection and no slot,
 * so nothing is left behind.  (A program that runs on either keeps its
 * segment until restarted: reload.c says so.)  0 when moved.
 */
int startup_move_segment(const struct policy *p)
{
	char name[POLICY_STR_MAX];
	policy_segment_name(p, g.policy_path[0] ? g.policy_path : NULL, name, sizeof name);
	if (g.policy_ok || g.disabled || (g.seg.hdr && strcmp(name, g.seg.name) == 0))
		return -1;
	pthread_mutex_lock(&g.lock);
	int rc = -1;
	if (__atomic_load_n(&g.proc->connections, __ATOMIC_RELAXED) == 0) {
		uint32_t threads = __atomic_load_n(&g.proc->threads, __ATOMIC_RELAXED);
		record_unregister_process();
		rc = segwatch_move(name, p);
		if (rc == 0)
			cap_reap(&g.seg, 0);
		record_register_process(0);
		__atomic_store_n(&g.proc->threads, threads, __ATOMIC_RELAXED);
		map_epoch_bump();
	}
	pthread_mutex_unlock(&g.lock);
	return rc;
}

/* Move a connection's record to a new owner (this process after fork). */
static void adopt(void *value, void *arg)
{
	struct conn *c = value;
	(void)arg;
	struct seg_conn copy = *c->rec;
	/* the parent's slots stay the parent's: the copy never shows them, not
	 * even for the moment before the memset below (an audit of another
	 * process would count a parked one) */
	memset(copy.hold, 0, sizeof copy.hold);
	int idx = g.seg.hdr && g.proc_idx >= 0 ? seg_conn_claim(&g.seg, (uint32_t)g.proc_idx) : -1;
	c->idx = idx;
	c->rec = idx >= 0 ? &g.seg.conns[idx] : &c->local;
	uint32_t state = c->rec->state, gen = c->rec->gen;
	*c->rec = copy;
	c->rec->state = state;
	c->rec->gen = gen;
	c->rec->proc = (uint32_t)g.proc_idx;
	c->rec->pid = g.pid;
	c->rec->flags = (c->rec->flags | CONN_INHERITED) & ~CONN_ORPHAN;
	memset(c->rec->hold, 0, sizeof c->rec->hold);  /* the parent's slots stay the parent's */
	c->deferred = NULL;      /* the parent's loop sends what it deferred */
	c->rec->queries = c->rec->xacts = c->rec->cross_thread_uses = 0;
	g.proc->connections++;
	g.proc->inherited++;
	if (idx >= 0)
		__atomic_store_n(&c->rec->state, SLOT_LIVE, __ATOMIC_RELEASE);
}

void shim_enter_slow(void)
{
	shim_ensure();
	thread_register();
}

void thread_register(void)
{
	pid_t pid = getpid();
	t.tid = (pid_t)syscall(SYS_gettid);
	thread_caches_forget();
	if (g.pid != pid) {
		/* First call in a fork child (another of its threads may race
		 * us here: only one registers). */
		pthread_mutex_lock(&g.lock);
		if (g.pid != pid) {
			pid_t parent = g.pid;
			record_register_process(parent);
			if (g.seg.hdr && g.proc_idx < 0)
				segwatch_table_full();
			connmap_each(&g.map, adopt, NULL);
		}
		pthread_mutex_unlock(&g.lock);
	}
	__atomic_fetch_add(&g.proc->threads, 1, __ATOMIC_RELAXED);
	pthread_setspecific(thread_key, (void *)1);
}

/* ---- exit --------------------------------------------------------------- */

static void report_leak(void *value, void *arg)
{
	struct conn *c = value;
	(void)arg;
	if (g.pol.leak_report && !(c->rec->flags & CONN_INHERITED))
		shim_log(LOG_WARNING, "connection to %s opened by thread %d was never closed "
		         "(%llu statements; leak_report = yes)", c->rec->server, (int)c->opener,
		         (unsigned long long)c->rec->queries);
	slots_release_all(c);
	record_release(c, 1);
}

static void leak_report_at_exit(void)
{
	if (g.pid != getpid())
		return;          /* a fork child that never used libpq */
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, report_leak, NULL);
	record_unregister_process();
	g.disabled = 1;      /* calls made after this point are not recorded */
	pthread_mutex_unlock(&g.lock);
	slots_at_exit();
}
