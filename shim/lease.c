/*
 * lease.c - scope = cluster: which process of a host talks to the
 * coordinator, how many of the cluster's slots the host holds, and when it
 * takes more or gives some back (see lease_seg.h for the keys and invariants).
 *
 * The leader.  Every process under a cluster policy runs one small thread
 * that blocks on the segment's robust `standby` mutex; its holder, the
 * standby, holds the leader's keys again on a session of its own and polls
 * the `leader` mutex (lease_seg.h): the first process finds none and leads
 * at once.  The leader keeps the coordination connection (coord.c).  When
 * the leader's process dies (kill -9 included), exits or execs, the
 * kernel marks the mutex EOWNERDEAD, the standby takes it over with the
 * keys in hand, and the next waiter becomes the standby; the server ends
 * the dead leader's session as soon as its socket closes.  A slot the host
 * uses is freed on the server only when both sessions have let it go:
 * nothing is orphaned and nothing counted twice.  A fork child inherits
 * neither the thread nor the session:
 * lease_after_fork() closes its copy of the socket without sending
 * anything (the parent's session goes on); the child starts a thread of
 * its own at its first slot wait (lease_check).  libpq's socket is
 * close-on-exec.
 *
 * The lease: the host's pools of keys, grow, fair share and give back,
 * are in lease_pool.c; lease_int.h is what the two files share.
 *
 * Failure.  The coordinator unreachable (at start or lost mid-run: the
 * connection fails, the server goes away, keepalives give up): with
 * on_error = fail-closed the semaphore is closed and new work is refused
 * (lease_check: 53300 naming the coordinator); with fail-open the host cap
 * (max_active on this host alone) is in force, and the log and `pqshim
 * stat` say so.  The leader tries again every LEASE_RECONNECT_MS and goes
 * back to the cluster when it succeeds (taking back the standby's keys
 * first, and locking at least as many slots as are active before it admits
 * more).  Waiters already queued are woken and refused at once under
 * fail-closed (cap_set_closed, slots.c).  Work already running when both
 * of the host's sessions are lost (a network cut, a coordinator restart)
 * keeps running: the server has freed this host's locks, so until that
 * work ends the cluster may run over its cap (README, "Across hosts").
 */
#include "shim.h"
#include "coord.h"
#include "lease.h"
#include "lease_gate.h"
#include "lease_int.h"
#include "log.h"
#include "procid.h"
#include "standby.h"

#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LEASE_TICK_MS      2      /* the leader looks at the semaphore */
#define LEASE_RETRY_MS     25     /* a host that wants asks again */
#define LEASE_LINGER_MS    100    /* unused slots go back (another host wants) */
#define LEASE_RECONNECT_MS 500
#define LEASE_PUBLISH_MS   1000   /* application_name: active, waiting */
#define LEASE_START_WAIT_MS 4000  /* a first wait lets the leader connect (connect_timeout 3 s) */

static int started;               /* this process runs its thread (atomic) */

static uint64_t real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

static struct seg_lease *lease(void)
{
	return &g.seg.hdr->lease;
}

static int cluster_scope(void)
{
	/* the segment's semaphores are the ones in force (slots.c) */
	return g.pol.scope == SCOPE_CLUSTER && g.seg.hdr && hot.cap == &g.seg.hdr->cap;
}

static void set_state(struct seg_lease *L, enum lease_state s)
{
	if (__atomic_load_n(&L->state, __ATOMIC_RELAXED) == (uint32_t)s)
		return;
	L->since_ns = real_ns();
	__atomic_store_n(&L->state, s, __ATOMIC_RELEASE);
}

static void describe(struct seg_lease *L)
{
	coord_describe(g.pol.coordinator, L->coordinator, sizeof L->coordinator);
}

static void down(struct seg_lease *L, const char *why)
{
	enum lease_state s = g.pol.on_error == ONERROR_FAIL_OPEN ? LEASE_OPEN : LEASE_CLOSED;
	if (L->state != (uint32_t)s || strcmp(L->error, why) != 0) {
		if (s == LEASE_OPEN)
			shim_log(LOG_ERR, "the coordinator (%s) is unreachable: %s; falling back to the "
			         "host cap (max_active = %u on this host alone; on_error = fail-open)",
			         L->coordinator, why, g.pol.max_active);
		else
			shim_log(LOG_ERR, "the coordinator (%s) is unreachable: %s; refusing new work "
			         "(on_error = fail-closed)", L->coordinator, why);
	}
	snprintf(L->error, sizeof L->error, "%s", why);
	L->leased = 0;
	L->wanting = 0;
	L->backend_pid = 0;
	pools_forget();
	gate_forget(L, GATE_NONE);
	set_state(L, s);
	/* The keys published stay: the standby keeps them for our return. */
	if (s == LEASE_CLOSED || g.pol.max_active)
		pool_local_set(lease_ld.pool[0].local = s == LEASE_OPEN ? g.pol.max_active : 0);
	pool_lanes_local(s == LEASE_OPEN);   /* fail-open: the lanes on this host's terms */
	lease_ld.next_connect_ms = mono_ms() + LEASE_RECONNECT_MS;
}

void lease_lost(struct seg_lease *L)
{
	down(L, "the connection was lost");
}

static void reach(struct seg_lease *L)
{
	char err[LEASE_ERROR_MAX], app[64];
	describe(L);
	snprintf(app, sizeof app, "pqshim %u %.40s", L->classid, L->host);
	uint32_t was = L->state;
	if (coord_connect(g.pol.coordinator, app, L->classid, err, sizeof err) != 0) {
		down(L, err);
		return;
	}
	if (was == LEASE_OPEN || was == LEASE_CLOSED)
		shim_log(LOG_INFO, "the coordinator (%s) is reachable again: back to the cluster cap "
		         "(max_active = %u)", L->coordinator, g.pol.max_active);
	L->error[0] = '\0';
	pools_forget();
	gate_forget(L, GATE_NONE);
	lease_ld.published[0] = '\0';
	lease_ld.next_try_ms = 0;
	lease_ld.note = 1;                 /* a census at once (see take_over) */
	pool_local_set(lease_ld.pool[0].local = 0);     /* until slots are leased */
	pool_lanes_local(0);
	/* Our last session's keys that the standby kept: ours again. */
	uint32_t sb = __atomic_load_n(&L->standby_backend, __ATOMIC_ACQUIRE);
	if (sb && lease_standby_alive(&g.seg, L)) {
		uint32_t keys[LEASE_KEYS_MAX], n = 0;
		if (coord_adopt((int)sb, keys, &n, LEASE_KEYS_MAX) < 0) {
			down(L, "the connection was lost");
			return;
		}
		pools_fill(keys, n);
	}
	pool_keys_changed(L);
	L->backend_pid = (uint32_t)coord_backend_pid();
	set_state(L, LEASE_OK);
}

/* What the host does, for `pqshim stat` on other hosts (at most once a second). */
static void publish(struct seg_lease *L, uint32_t count, uint32_t waiting)
{
	uint64_t now = mono_ms();
	if (now < lease_ld.next_publish_ms)
		return;
	char app[64];
	snprintf(app, sizeof app, "pqshim %u %.24s a=%u w=%u", L->classid, L->host, count, waiting);
	if (strcmp(app, lease_ld.published) == 0)
		return;
	lease_ld.next_publish_ms = now + LEASE_PUBLISH_MS;
	if (coord_publish(app) < 0)
		return lease_lost(L);
	snprintf(lease_ld.published, sizeof lease_ld.published, "%s", app);
}

/* A standby becomes the leader: its session holds the keys already (the
 * old leader's, as last mirrored).  0, or -1 (lead from scratch). */
static int take_over(struct seg_lease *L)
{
	uint32_t keys[LEASE_KEYS_MAX], n = 0;
	if (coord_own_slots(keys, &n, LEASE_KEYS_MAX) < 0)
		return -1;
	pools_fill(keys, n);
	gate_forget(L, standby_gate_held());   /* S as the standby held it */
	lease_ld.published[0] = '\0';
	lease_ld.next_publish_ms = 0;      /* say at once that we lead */
	lease_ld.next_try_ms = 0;
	lease_ld.note = 1;                 /* a census at once: wants announced before we led */
	/* What the old leader let the host use is covered by our keys; a raise
	 * above it waits for the next standby (keys_changed). */
	uint64_t w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_ACQUIRE);
	uint32_t cur = (w & SEM_CLOSED) ? 0 : __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max,
	                                                      __ATOMIC_ACQUIRE);
	struct pool *P = &lease_ld.pool[0];
	P->local = cur < P->nheld ? cur : P->nheld;
	pool_local_set(P->local);
	for (unsigned p = 1; p < CAP_LANES; p++) {
		uint32_t m = __atomic_load_n(&hot.cap->lanes.lane[p].max, __ATOMIC_ACQUIRE);
		pool_look(p);
		P = &lease_ld.pool[p];
		if (!P->max)
			continue;
		P->local = m == CAP_LANE_NONE || m > P->nheld ? P->nheld : m;
		pool_apply(p, P->local);
	}
	lease_ld.lane_gen = __atomic_load_n(&hot.cap->lanes.gen, __ATOMIC_ACQUIRE);
	pool_keys_changed(L);
	L->error[0] = '\0';
	L->backend_pid = (uint32_t)coord_backend_pid();
	L->takeovers++;
	set_state(L, LEASE_OK);
	return 0;
}

/* One look of the leader: demand, the census when due, grow or give, the
 * gate, and what the host may use. */
static void lead_tick(struct seg_lease *L, uint64_t now)
{
	pool_lanes_renumbered(L);
	if (!coord_connected())
		return;
	int any_want = 0, others_want = 0;
	for (unsigned p = 0; p < CAP_LANES; p++) {
		struct pool *P = &lease_ld.pool[p];
		pool_look(p);
		if (P->max && pool_room(P, P->max) != 0)
			P->max = 0;
		if (P->nheld > P->max && P->give_to > P->max)
			P->give_to = P->max;     /* the cap was lowered (or the lane is gone) */
		if (P->count > P->peak)
			P->peak = P->count;
		int want = P->demand > P->nheld;
		if (want != P->announced) {
			if (coord_want(pool_want_key(p), want) < 0)
				return lease_lost(L);
			P->announced = want;
			lease_ld.next_try_ms = 0;
		}
		any_want |= want;
		others_want |= P->others_want;
	}
	L->wanting = (uint32_t)lease_ld.pool[0].announced;
	int note = coord_wait(0);
	if (note < 0)
		return lease_lost(L);
	note |= lease_ld.note;
	lease_ld.note = 0;
	int gated = gate_needed();
	if (note || ((any_want || others_want) && now >= lease_ld.next_try_ms)
	    || (gated && now >= lease_ld.next_census_ms)) {
		lease_ld.next_try_ms = now + LEASE_RETRY_MS;
		pool_rebalance(L);
		if (!coord_connected())
			return;
	}
	int linger = now >= lease_ld.window_ms + LEASE_LINGER_MS;
	if (linger)
		lease_ld.window_ms = now;
	if (gated) {
		int r = gate_tick(L, lease_ld.others_x, note,
		                  pool_usable(&lease_ld.pool[0]) || !g.pol.max_active);
		if (r < 0)
			return lease_lost(L);
		lease_ld.open = r;
	} else {
		lease_ld.open = 1;
		cap_lanes_set_gate(&g.seg, hot.cap, CAP_GATE_LOCAL);
	}
	for (unsigned p = 0; p < CAP_LANES; p++) {
		struct pool *P = &lease_ld.pool[p];
		if (!P->max) {
			if (p == 0) {
				pool_unleased(L);
			} else if (P->nheld) {   /* the lane is no longer capped: its keys go */
				P->give_to = 0;
				pool_give_back(L, p);
			}
			continue;
		}
		if (linger) {
			/* Slots nobody used for a whole window go back while another
			 * host wants them. */
			if (P->others_want && P->demand <= P->count && P->peak < pool_usable(P))
				P->give_to = P->peak;
			P->peak = P->count;
		}
		pool_local_use(L, p, p == 0 && !lease_ld.open ? 0 : pool_usable(P));
		pool_give_back(L, p);
		if (!coord_connected())
			return;
	}
	L->leased = lease_ld.pool[0].nheld;
	L->max_active = g.pol.max_active;
	uint64_t sent = coord_statements();
	L->statements += sent - lease_ld.counted;
	lease_ld.counted = sent;
	uint64_t w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_ACQUIRE);
	publish(L, sem_count(w), sem_waiting(w));
}

static void lead(struct seg_lease *L)
{
	L->leader_pid = getpid();
	L->leader_start = procid_starttime(getpid());
	L->leaders++;
	L->classid = lease_classid(g.seg.name);
	if (gethostname(L->host, sizeof L->host) != 0)
		snprintf(L->host, sizeof L->host, "?");
	L->host[sizeof L->host - 1] = '\0';
	L->leased = 0;
	if (coord_connected() && take_over(L) == 0) {
		shim_log(LOG_INFO, "process %d leads host %s for the cluster cap (classid %u), "
		         "taking over as its standby with %u slots", (int)getpid(), L->host,
		         L->classid, pool_keys_held());
	} else {
		coord_close();
		set_state(L, LEASE_CONNECTING);
		pool_local_set(lease_ld.pool[0].local = 0);
		pool_lanes_local(0);
		shim_log(LOG_INFO, "process %d leads host %s for the cluster cap (classid %u)",
		         (int)getpid(), L->host, L->classid);
	}

	for (;;) {
		if (g.disabled || g.pid != getpid())
			return;              /* the process is exiting */
		uint64_t now = mono_ms();
		if (!coord_connected()) {
			if (L->state == LEASE_OK)
				lease_lost(L);
			if (now >= lease_ld.next_connect_ms)
				reach(L);
			if (!coord_connected()) {
				struct timespec ts = { 0, 20 * 1000000L };
				nanosleep(&ts, NULL);
				continue;
			}
		}
		lead_tick(L, now);
		if (!coord_connected())
			continue;
		/* Sleep on the socket: a notification wakes us at once. */
		int r = coord_wait(LEASE_TICK_MS);
		if (r < 0)
			lease_lost(L);
		else
			lease_ld.note = r;
	}
}

static void *leader_thread(void *arg)
{
	(void)arg;
	struct seg_lease *L = lease();
	/* Every process's thread lines up for the standby's place; the
	 * standby looks at the leader's (take(leader) when there is none). */
	while (standby_take(&L->standby, 0) != 0) {
		struct timespec ts = { 1, 0 };
		nanosleep(&ts, NULL);
	}
	int leads = 1;
	if (standby_take(&L->leader, 1) == 0)
		pthread_mutex_unlock(&L->standby);
	else
		OWN(leads = standby_run(L));
	/* Everything this thread does in libpq is the shim's own: libpq's
	 * calls to its exports pass the wrappers untouched. */
	if (leads)
		OWN(lead(L));
	/* The process is exiting: the mutexes go with the thread. */
	return NULL;
}

static void start_thread(void)
{
	if (shim_thread_start(&started, leader_thread) != 0)
		shim_log(LOG_WARNING, "could not start the coordination thread");
}

/* The lease's part of the segment, set up once per segment. */
static void lease_init(struct seg_lease *L)
{
	uint32_t zero = 0;
	if (__atomic_compare_exchange_n(&L->init, &zero, 1, 0, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE)) {
		pthread_mutexattr_t ma;
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
		pthread_mutex_init(&L->leader, &ma);
		pthread_mutex_init(&L->standby, &ma);
		pthread_mutexattr_destroy(&ma);
		L->classid = lease_classid(g.seg.name);
		__atomic_store_n(&L->init, 2, __ATOMIC_RELEASE);
		return;
	}
	for (int i = 0; i < 1000 && __atomic_load_n(&L->init, __ATOMIC_ACQUIRE) != 2; i++)
		usleep(1000);
}

/* A leader whose image exec()ed is gone although its pid lives on: the
 * kernel let its robust mutexes go at the exec, libpq's socket closed and
 * the server ended its session (its record says so: seg_pid_alive). */
static int leader_alive(struct seg_lease *L)
{
	uint32_t s = __atomic_load_n(&L->state, __ATOMIC_ACQUIRE);
	return s != LEASE_NONE && seg_pid_alive(&g.seg, L->leader_pid, L->leader_start);
}

void lease_configure(void)
{
	if (!cluster_scope()) {
		if (g.pol.scope == SCOPE_CLUSTER)
			shim_log(LOG_WARNING, "scope = cluster needs the shared segment: the cap holds "
			         "within this process only");
		return;
	}
	struct seg_lease *L = lease();
	lease_init(L);
	/* No live leader: whatever the semaphore says is stale (a dead host's
	 * lease).  Nothing may run until a leader holds slots. */
	if (!leader_alive(L)) {
		if (!__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED))
			cap_set_max(&g.seg, hot.cap, SEM_ACTIVE, 1);
		cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, 1);
	}
	if (!g.pol.coordinator[0])
		shim_log(LOG_ERR, "scope = cluster without a coordinator: no slot can be leased");
	start_thread();
}

const char *lease_check(char *buf, size_t size)
{
	if (!cluster_scope())
		return NULL;
	struct seg_lease *L = lease();
	if (!__atomic_load_n(&started, __ATOMIC_ACQUIRE))
		lease_configure();       /* a fork child */
	/* A host starting up: let its leader reach the coordinator (or fail
	 * to: connect_timeout) before queueing, so that fail-closed refuses. */
	for (int i = 0; i < LEASE_START_WAIT_MS / 10; i++) {
		uint32_t s = __atomic_load_n(&L->state, __ATOMIC_ACQUIRE);
		if (s != LEASE_NONE && s != LEASE_CONNECTING)
			break;
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return lease_refused(buf, size);
}

const char *lease_refused(char *buf, size_t size)
{
	if (!cluster_scope())
		return NULL;
	struct seg_lease *L = lease();
	if (__atomic_load_n(&L->state, __ATOMIC_ACQUIRE) != LEASE_CLOSED || !leader_alive(L))
		return NULL;
	snprintf(buf, size, "pqshim: no slot: the coordinator (%s) is unreachable: %s "
	         "(scope = cluster, max_active = %u, on_error = fail-closed, policy %s)",
	         L->coordinator, L->error, g.pol.max_active,
	         g.policy_path[0] ? g.policy_path : "none");
	return buf;
}

void lease_after_fork(void)
{
	coord_forget();
	for (unsigned p = 0; p < CAP_LANES; p++)
		free(lease_ld.pool[p].held);
	memset(&lease_ld, 0, sizeof lease_ld);
	__atomic_store_n(&started, 0, __ATOMIC_RELEASE);
}