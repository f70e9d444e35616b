/*
 * track.c - the record of every connection, per process and per thread.
 *
 * Owns: lazy initialisation (policy, segment, process record), thread
 * registration and counting, fork handling, opening and closing connection
 * records, the cross-thread and per-thread rules, and the leak report.
 *
 * Invariant: every PGconn the program holds (opened by a wrapped connect in
 * this process or inherited from a parent) has exactly one struct conn in
 * g.map, whose rec is either its own LIVE record in the segment or its
 * private `local` copy.  Only the process in g.pid writes the records it
 * owns; a fork child re-registers before it touches any.
 */
#include "shim.h"
#include "log.h"
#include "pqerr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct shim g = { .lock = PTHREAD_MUTEX_INITIALIZER, .proc_idx = -1, .map_epoch = 1,
                  .deferrals = DEFER_UNINIT };
TLS struct thread_state t;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the policy and the segment ---------------------------------------- */

void shim_publish_policy(void)
{
	struct seg_header *h = g.seg.hdr;
	if (!h)
		return;
	/* Readers copy these strings racily; they are only shown to humans. */
	snprintf(h->policy_path, sizeof h->policy_path, "%s", g.policy_path);
	snprintf(h->policy_error, sizeof h->policy_error, "%s", g.policy_error);
	__atomic_fetch_add(&h->policy_generation, 1, __ATOMIC_RELEASE);
}

static void load_policy(void)
{
	const char *path = getenv("PQSHIM_POLICY");
	policy_defaults(&g.pol);
	g.policy_ok = 1;
	if (!path || !*path)
		return;
	snprintf(g.policy_path, sizeof g.policy_path, "%s", path);
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

static void register_process(pid_t parent)
{
	g.pid = getpid();
	g.proc = &g.proc_local;
	g.proc_idx = -1;
	int idx = g.seg.hdr ? seg_proc_claim(&g.seg) : -1;
	if (idx >= 0) {
		g.proc_idx = idx;
		g.proc = &g.seg.procs[idx];
	}
	struct seg_proc *p = g.proc;
	p->pid = g.pid;
	p->ppid = parent ? parent : getppid();
	p->starttime = seg_starttime(g.pid);
	p->uid = (uint32_t)geteuid();
	p->threads = 0;
	p->connections = 0;
	p->inherited = 0;
	p->started_ns = now_ns();
	snprintf(p->program, sizeof p->program, "%s", program_invocation_short_name);
	if (idx >= 0)
		__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
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
	g.drainer = 0;           /* threads do not survive fork() */
	if (g.cap == &g.private_cap) {
		/* the parent's counts and waiters are not the child's */
		cap_init_private(&g.private_cap);
		g.private_cap.sems[SEM_ACTIVE].max = g.pol.max_active;
		g.private_cap.sems[SEM_CONNECTIONS].max = g.pol.max_connections;
	}
	defer_after_fork();
	g.shares = 0;            /* adopt() clears the inherited holds */
	g.ticking = 0;
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
	if (g.state == SHIM_READY) {
		pthread_mutex_unlock(&init_lock);
		return;
	}
	if (getauxval(AT_SECURE))
		g.disabled = 1;         /* setuid: stay out of the way */
	if (real_resolve() != 0)
		g.disabled = 1;
	pqerr_init();
	load_policy();
	shim_log_target(g.pol.log);

	char name[POLICY_STR_MAX];
	policy_segment_name(&g.pol, g.policy_path[0] ? g.policy_path : NULL, name, sizeof name);
	int err = g.disabled ? 0 : seg_attach(&g.seg, name, 1);
	if (err)
		shim_log(LOG_WARNING, "segment %s unavailable: %s; tracking in this process only",
		         name, seg_strerror(err));
	if (g.seg.hdr) {
		seg_reap(&g.seg);
		/* Records of this very pid are from before an exec(): libpq's
		 * sockets are close-on-exec, so those connections are gone. */
		seg_release_pid(&g.seg, getpid());
		shim_publish_policy();
	}
	register_process(0);
	slots_configure();
	reload_note_file();
	readonly_update();
	pthread_key_create(&g.thread_key, thread_gone);
	pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
	atexit(leak_report_at_exit);
	__atomic_store_n(&g.state, SHIM_READY, __ATOMIC_RELEASE);
	__atomic_fetch_sub(&g.deferrals, DEFER_UNINIT, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&init_lock);
}

/* ---- threads and fork --------------------------------------------------- */

/* Move a connection's record to a new owner (this process after fork). */
static void adopt(void *value, void *arg)
{
	struct conn *c = value;
	(void)arg;
	struct seg_conn copy = *c->rec;
	int idx = g.seg.hdr && g.proc_idx >= 0 ? seg_conn_claim(&g.seg, (uint32_t)g.proc_idx) : -1;
	c->idx = idx;
	c->rec = idx >= 0 ? &g.seg.conns[idx] : &c->local;
	uint32_t state = c->rec->state, gen = c->rec->gen;
	*c->rec = copy;
	c->rec->state = state;
	c->rec->gen = gen;
	c->rec->proc = (uint32_t)g.proc_idx;
	c->rec->pid = g.pid;
	c->rec->flags |= CONN_INHERITED;
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
			register_process(parent);
			connmap_each(&g.map, adopt, NULL);
		}
		pthread_mutex_unlock(&g.lock);
	}
	__atomic_fetch_add(&g.proc->threads, 1, __ATOMIC_RELAXED);
	pthread_setspecific(g.thread_key, (void *)1);
}

/* ---- opening and closing ------------------------------------------------ */

static void describe_server(PGconn *pg, struct seg_conn *r)
{
	const char *host = real.PQhost(pg), *port = real.PQport(pg);
	const char *db = real.PQdb(pg), *user = real.PQuser(pg);
	/* Never the password: only these four keywords are shown. */
	snprintf(r->server, sizeof r->server, "host=%s port=%s dbname=%s user=%s",
	         host ? host : "", port ? port : "", db ? db : "", user ? user : "");
	const char *app = real.PQparameterStatus(pg, "application_name");
	snprintf(r->appname, sizeof r->appname, "%s", app ? app : "");
}

static void count_connections(void *value, void *arg)
{
	struct conn *c = value;
	if (c->opener == t.tid)
		++*(unsigned *)arg;
}

/* Why the calling thread may not open another connection, or NULL. */
static const char *connect_refusal(char *buf, size_t size)
{
	if (!g.policy_ok) {
		snprintf(buf, size, "pqshim: connection refused: the policy is unusable: %s "
		         "(on_error = fail-closed)", g.policy_error);
		track_refused();
		return buf;
	}
	unsigned limit = g.pol.max_connections_per_thread, mine = 0;
	if (!limit)
		return NULL;
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, count_connections, &mine);
	pthread_mutex_unlock(&g.lock);
	if (mine < limit)
		return NULL;
	snprintf(buf, size, "pqshim: connection refused: thread %d already holds %u connections "
	         "(max_connections_per_thread = %u, policy %s)", (int)t.tid, mine, limit,
	         g.policy_path[0] ? g.policy_path : "none");
	track_refused();
	return buf;
}

void track_refused(void)
{
	if (g.seg.hdr)
		seg_add(&g.seg.hdr->totals.refused, 1);
}

static void set_status(struct seg_conn *r, PGconn *pg)
{
	switch (real.PQstatus(pg)) {
	case CONNECTION_OK:
		r->status = CST_OK;
		r->cstate = CS_IDLE;
		break;
	case CONNECTION_BAD:
		r->status = CST_BAD;
		r->cstate = CS_IDLE;
		break;
	default:
		r->status = CST_CONNECTING;
		r->cstate = CS_CONNECTING;
		break;
	}
}

/* Give the record back (its counters fold into the totals). */
static void release(struct conn *c, int leaked)
{
	if (c->idx >= 0) {
		struct seg_conn *r = c->rec;
		/* Point the record at the private copy first: a racing thread
		 * (misuse, but possible) then writes memory that is ours. */
		c->local = *r;
		c->rec = &c->local;
		if (__atomic_load_n(&r->state, __ATOMIC_RELAXED) == SLOT_LIVE) {
			seg_conn_release(&g.seg, c->idx, leaked);
		} else {                 /* claimed, never opened */
			__atomic_store_n(&r->pid, 0, __ATOMIC_RELAXED);
			__atomic_fetch_add(&r->gen, 1, __ATOMIC_RELEASE);
			__atomic_store_n(&r->state, SLOT_FREE, __ATOMIC_RELEASE);
		}
		c->idx = -1;
	}
}

/*
 * Before a connect: the rules, a record, and a connection slot (which may
 * wait).  Returns NULL with *cp set (NULL: go on untracked), or the reason
 * the connect is refused.
 */
const char *track_connect_begin(struct conn **cp, char *buf, size_t size)
{
	*cp = NULL;
	shim_enter();
	if (g.disabled)
		return NULL;
	if (clock_ticks() >= __atomic_load_n(&g.next_tick, __ATOMIC_RELAXED))
		shim_tick();         /* a fixed policy must be noticed by connects too */
	if (route_enabled() && !__atomic_load_n(&g.drainer, __ATOMIC_RELAXED))
		drainer_start();
	const char *why = connect_refusal(buf, size);
	if (why)
		return why;
	struct conn *c = calloc(1, sizeof *c);
	if (c) {
		c->opener = t.tid;
		c->idx = g.seg.hdr && g.proc_idx >= 0 ? seg_conn_claim(&g.seg, (uint32_t)g.proc_idx) : -1;
		c->rec = c->idx >= 0 ? &g.seg.conns[c->idx] : &c->local;
		c->rec->proc = (uint32_t)g.proc_idx;
		c->rec->pid = g.pid;
		c->rec->tid = t.tid;
	}
	why = slot_connect(c, buf, size);
	if (why) {
		if (c)
			release(c, 0);
		free(c);
		return why;
	}
	*cp = c;
	return NULL;
}

/* Server, application name and backend of a connection, as they stand. */
void track_describe(struct conn *c)
{
	set_status(c->rec, c->pg);
	describe_server(c->pg, c->rec);
	c->rec->backend_pid = c->rec->status == CST_OK ? (uint32_t)real.PQbackendPID(c->pg) : 0;
}

/* After the connect returned pg (NULL only when libpq ran out of memory).
 * Takes the arguments (args) the route was planned from. */
void track_connect_end(struct conn *c, PGconn *pg, struct connargs *args,
                       const struct connargs *where, int target, int redirected)
{
	if (!c || !pg) {
		connargs_free(args);
		if (c) {
			slots_release_all(c);
			release(c, 0);
			free(c);
		}
		return;
	}
	c->pg = pg;
	connargs_copy(&c->where, where);
	c->args = *args;             /* moved: the connection owns them now */
	args->n = 0;
	c->routed = c->args.n > 0 || route_enabled();
	c->ro_gen = __atomic_load_n(&g.ro_gen, __ATOMIC_ACQUIRE);
	if (redirected && g.seg.hdr)
		seg_add(&g.seg.hdr->totals.redirects, 1);
	struct seg_conn *r = c->rec;
	r->tid = r->last_tid = t.tid;
	r->target = (uint32_t)target;
	r->flags = 0;
	r->nthreads = 1;
	memset(r->threads, 0, sizeof r->threads);
	r->threads[0] = t.tid;
	r->queries = r->xacts = r->cross_thread_uses = 0;
	r->opened_ns = now_ns();
	r->last_used = clock_ticks();
	track_describe(c);
	pthread_mutex_lock(&g.lock);
	if (connmap_put(&g.map, pg, c) != 0) {
		pthread_mutex_unlock(&g.lock);
		slots_release_all(c);
		release(c, 0);
		free(c);
		return;
	}
	if (c->idx >= 0) {
		__atomic_store_n(&r->state, SLOT_LIVE, __ATOMIC_RELEASE);
		seg_add(&g.seg.hdr->totals.connects, 1);
	} else if (g.seg.hdr) {
		seg_add(&g.seg.hdr->totals.untracked, 1);
	}
	__atomic_fetch_add(&g.proc->connections, 1, __ATOMIC_RELAXED);
	map_epoch_bump();
	pthread_mutex_unlock(&g.lock);
}

/* After a connect or reset step: status, state and server as they stand. */
void track_connected(PGconn *pg)
{
	struct conn *c = conn_lookup(pg);
	if (!c)
		return;
	pqint_verify(pg);
	set_status(c->rec, pg);
	if (c->rec->status == CST_OK) {
		describe_server(pg, c->rec);
		c->rec->backend_pid = (uint32_t)real.PQbackendPID(pg);
	}
}

void track_close(PGconn *pg)
{
	if (!pg)
		return;
	if (unlikely(__atomic_load_n(&g.state, __ATOMIC_ACQUIRE) != SHIM_READY))
		return;          /* nothing was ever tracked */
	if (unlikely(t.tid == 0))
		thread_register();
	pthread_mutex_lock(&g.lock);
	struct conn *c = connmap_del(&g.map, pg);
	if (c) {
		if (c->deferred) {
			pthread_mutex_unlock(&g.lock);
			defer_forget(c);
			pthread_mutex_lock(&g.lock);
		}
		slots_hand_over_locked(c);
		slots_release_all(c);
		release(c, 0);
		__atomic_fetch_sub(&g.proc->connections, 1, __ATOMIC_RELAXED);
		if (c->pipeline)
			__atomic_fetch_sub(&g.pipelines, 1, __ATOMIC_RELAXED);
	}
	map_epoch_bump();
	pthread_mutex_unlock(&g.lock);
	if (c)
		session_forget(c);
	free(c);
}

/* ---- rules -------------------------------------------------------------- */

static void remember_thread(struct seg_conn *r, pid_t tid)
{
	if (r->last_tid == tid)
		return;
	r->last_tid = tid;
	uint32_t n = r->nthreads < SEG_THREADS_SEEN ? r->nthreads : SEG_THREADS_SEEN;
	for (uint32_t i = 0; i < n; i++)
		if (r->threads[i] == tid)
			return;
	if (r->nthreads < SEG_THREADS_SEEN)
		r->threads[r->nthreads] = tid;
	r->nthreads++;
}

/* A thread other than the opener uses the connection.  NULL: go on. */
const char *cross_thread_use(struct conn *c, int sends)
{
	struct seg_conn *r = c->rec;
	remember_thread(r, t.tid);
	if (!sends)
		return NULL;
	__atomic_store_n(&r->cross_thread_uses, r->cross_thread_uses + 1, __ATOMIC_RELAXED);
	switch (g.pol.cross_thread) {
	case CROSS_ALLOW:
		return NULL;
	case CROSS_WARN:
		if (!c->warned) {
			c->warned = 1;
			shim_log(LOG_WARNING, "connection to %s opened by thread %d is used by thread %d "
			         "(cross_thread = warn)", r->server, (int)c->opener, (int)t.tid);
		}
		return NULL;
	case CROSS_DENY:
	default: {
		static TLS char msg[384];
		snprintf(msg, sizeof msg, "pqshim: statement refused: connection opened by thread %d "
		         "used by thread %d (cross_thread = deny, policy %s)", (int)c->opener,
		         (int)t.tid, g.policy_path[0] ? g.policy_path : "none");
		track_refused();
		t.sqlstate = SQLSTATE_PREREQUISITE_STATE;
		return msg;
	}
	}
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
	release(c, 1);
}

static void leak_report_at_exit(void)
{
	if (g.pid != getpid())
		return;          /* a fork child that never used libpq */
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, report_leak, NULL);
	if (g.proc_idx >= 0)
		seg_proc_release(&g.seg, g.proc_idx);
	g.proc_idx = -1;
	g.proc = &g.proc_local;
	g.disabled = 1;      /* calls made after this point are not recorded */
	pthread_mutex_unlock(&g.lock);
	/* A thread still queued for a slot as we exit leaves an entry of a
	 * process that no longer has a record: count again without it. */
	if (g.capseg)
		cap_audit(g.capseg);
}
