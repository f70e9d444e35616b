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
 * The lease.  The host's processes take slots through the segment's
 * semaphore at local speed; the semaphore's max is the lease.  The leader
 * looks at the semaphore word every LEASE_TICK_MS (a memory read, no
 * round trip): demand is count + waiting.
 *  - grow: while demand exceeds the lease the host announces it (the WANT
 *    key, shared, plus a NOTIFY) and takes free slots up to its fair share,
 *    again every LEASE_RETRY_MS and whenever another host says a slot came
 *    free;
 *  - fair share: water-filling over the hosts in the census (pg_locks): a
 *    host that does not want keeps what it holds, the rest is split evenly
 *    among the hosts that want, the remainder going round every
 *    LEASE_ROTATE_MS of the coordinator's clock (hosts ordered by backend
 *    pid), so that no host starves and each gets the same share over time;
 *  - give back: a host above its share lowers its semaphore's max first and
 *    unlocks the slots on the coordinator once its count is down to it (a
 *    slot is free on this host before another host can take it); while
 *    another host wants, slots left unused for LEASE_LINGER_MS go back too.
 *    While nobody else wants, an idle lease stays: the next transaction
 *    needs no round trip.
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
#include "log.h"
#include "procid.h"
#include "share.h"
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
#define LEASE_ROTATE_MS    250    /* the remainder of the fair share moves on */
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

/* The host's processes may hold n slots (0: none, SEM_CLOSED). */
static void local_set(uint32_t n)
{
	if (n == 0) {
		cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, 1);
		return;
	}
	cap_set_max(&g.seg, hot.cap, SEM_ACTIVE, n);
	cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, 0);
}

static void set_state(struct seg_lease *L, enum lease_state s)
{
	if (__atomic_load_n(&L->state, __ATOMIC_RELAXED) == (uint32_t)s)
		return;
	L->since_ns = real_ns();
	__atomic_store_n(&L->state, s, __ATOMIC_RELEASE);
}

/* ---- the leader's state (its thread only) -------------------------------- */

/* A pool of keys leased like the cluster's slots: pool 0 the cluster's
 * slots (keys 0..max_active-1), pool l a capped lane l's (LEASE_KEY_LANE). */
struct pool {
	uint32_t *held;           /* keys locked on the coordinator */
	uint32_t nheld, cap;      /* how many, room */
	uint32_t give_to;         /* lower the lease to this (== nheld: nothing to give) */
	int give_seen;            /* the count was down to it at the last tick */
	int announced;            /* its WANT key held */
	int others_want;          /* at the last census */
	uint32_t peak;            /* the highest count in this linger window */
	uint32_t local;           /* the max as this leader last set it */
	uint32_t grow_gen;        /* keys_gen after its last grow */
	uint32_t max, demand, count;   /* this tick's */
};

static struct {
	struct pool pool[CAP_LANES];
	unsigned lane_gen;        /* the lane table the lanes' pools are of */
	int note;                 /* another host notified while we slept */
	int others_x;             /* another host's exclusive lane waits (last census) */
	int open;                 /* the gate lets the host admit (or no gate) */
	uint64_t window_ms, next_try_ms, next_publish_ms, next_connect_ms, next_census_ms;
	char published[64];
	uint64_t counted;         /* coord_statements() already added to L->statements */
} ld;

_Static_assert(CAP_LANES <= COORD_GROUPS, "a census group per lane");

static uint32_t lane_key(unsigned p, uint32_t k)
{
	return p ? LEASE_KEY_LANE(p, k) : k;
}

static uint32_t want_key(unsigned p)
{
	return p ? LEASE_KEY_LANE_WANT(p) : LEASE_KEY_WANT;
}

static uint32_t keys_held(void)
{
	uint32_t n = 0;
	for (unsigned p = 0; p < CAP_LANES; p++)
		n += ld.pool[p].nheld;
	return n;
}

/* Publish the leader's keys for the standby (a seqlock: keys_gen is odd
 * while they change) and wake it.  Every pool's keys together never pass
 * LEASE_KEYS_MAX (grow), so the standby mirrors each. */
static uint32_t keys_changed(struct seg_lease *L)
{
	__atomic_add_fetch(&L->keys_gen, 1, __ATOMIC_ACQ_REL);
	uint32_t n = 0;
	for (unsigned p = 0; p < CAP_LANES; p++)
		for (uint32_t i = 0; i < ld.pool[p].nheld && n < LEASE_KEYS_MAX; i++)
			__atomic_store_n(&L->keys[n++], ld.pool[p].held[i], __ATOMIC_RELAXED);
	__atomic_store_n(&L->nkeys, n, __ATOMIC_RELAXED);
	uint32_t gen = __atomic_add_fetch(&L->keys_gen, 1, __ATOMIC_ACQ_REL);
	syscall(SYS_futex, &L->keys_gen, FUTEX_WAKE, 1, NULL, NULL, 0);
	return gen;
}

/* The host's processes may hold n of pool p's slots. */
static void pool_apply(unsigned p, uint32_t n)
{
	if (p == 0)
		local_set(n);
	else
		cap_lane_set_max(&g.seg, hot.cap, p, n);
}

/* Pool p's max on this host, u wanted: a raise waits until the standby,
 * if one is in place, holds the new keys too (lease_seg.h). */
static void local_use(struct seg_lease *L, unsigned p, uint32_t u)
{
	struct pool *P = &ld.pool[p];
	if (u > P->local && (int32_t)(__atomic_load_n(&L->mirrored_gen, __ATOMIC_ACQUIRE)
	                              - P->grow_gen) < 0 && lease_standby_alive(L))
		u = P->local;
	pool_apply(p, u);
	P->local = u;
}

static int room_for(struct pool *P, uint32_t m)
{
	if (m <= P->cap)
		return 0;
	uint32_t *n = realloc(P->held, (size_t)m * sizeof *n);
	if (!n)
		return -1;
	P->held = n;
	P->cap = m;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The slots this host may use now: the lease, less what is being given. */
static uint32_t usable(const struct pool *P)
{
	return P->give_to < P->nheld ? P->give_to : P->nheld;
}

/* Pool p's cap, demand and count this tick (max 0: no pool: the cap is
 * off, or the lane is uncapped, exclusive or not in the table). */
static void pool_look(unsigned p)
{
	struct pool *P = &ld.pool[p];
	P->max = P->demand = P->count = 0;
	if (p == 0) {
		uint64_t w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_ACQUIRE);
		P->max = g.pol.max_active;
		P->count = sem_count(w);
		P->demand = P->count + sem_waiting(w);
	} else {
		struct seg_lanes *lanes = &hot.cap->lanes;
		if (p > lanes->nlanes || (int)p > g.pol.nlanes || g.pol.lanes[p - 1].exclusive
		    || strcmp(lanes->lane[p].name, g.pol.lanes[p - 1].name) != 0)
			return;
		P->max = g.pol.lanes[p - 1].max_active;
		P->count = lw_count(__atomic_load_n(&lanes->lane[p].word, __ATOMIC_ACQUIRE));
		P->demand = P->count + __atomic_load_n(&lanes->lane[p].waiting, __ATOMIC_RELAXED);
	}
	if (P->demand > P->max)
		P->demand = P->max;
}

static void lost(struct seg_lease *L);

/* Ask the coordinator who holds what; take or give accordingly, pool by pool. */
static void rebalance(struct seg_lease *L)
{
	struct coord_host h[COORD_MAX_HOSTS];
	/* The turn is taken on the coordinator's clock: every host agrees on
	 * it whatever their own clocks say. */
	uint64_t now_ms = real_ns() / 1000000u;
	int n = coord_census(h, COORD_MAX_HOSTS, &now_ms);
	if (n < 0)
		return lost(L);
	ld.next_census_ms = mono_ms() + LEASE_ROTATE_MS;
	int self = coord_backend_pid(), me = -1;
	ld.others_x = 0;
	uint32_t others_want = 0, excl_hosts = 0;
	for (int i = 0; i < n; i++) {
		excl_hosts += h[i].xwant != 0;
		if (h[i].pid == self) {
			me = i;
			continue;
		}
		others_want |= h[i].wants;
		ld.others_x |= h[i].xwant;
	}
	L->excl_hosts = excl_hosts;
	if (me < 0) {                 /* we hold nothing and announce nothing */
		if (n >= COORD_MAX_HOSTS)
			return;
		me = n++;
		h[me] = (struct coord_host){ .pid = self };
		for (int i = me; i > 0 && h[i - 1].pid > h[i].pid; i--) {
			struct coord_host x = h[i];
			h[i] = h[i - 1];
			h[i - 1] = x;
			me = i - 1;
		}
	}
	for (unsigned p = 0; p < CAP_LANES; p++) {
		struct pool *P = &ld.pool[p];
		P->others_want = (others_want >> p) & 1;
		if (!P->max)
			continue;
		h[me].slots[p] = P->nheld;   /* our own view is the exact one */
		struct share_host sh[COORD_MAX_HOSTS];
		for (int i = 0; i < n; i++)
			sh[i] = (struct share_host){ h[i].slots[p], i == me ? P->announced
			                                             : (int)((h[i].wants >> p) & 1) };
		uint32_t share = share_of(sh, n, me, P->max, now_ms, LEASE_ROTATE_MS);
		if (share < usable(P))
			P->give_to = share;
		else if (P->give_to < P->nheld && share >= P->nheld)
			P->give_to = P->nheld;       /* no need to give any more */
		/* Up to the share while not giving; and never fewer than the work
		 * running here (a leader that came without the keys: they must be
		 * locked again before anything more is admitted).  Every pool's
		 * keys together stay within what the standby can hold too. */
		int giving = P->give_to < P->nheld;
		uint32_t target = giving ? 0 : share < P->demand ? share : P->demand;
		if (target < P->count)
			target = P->count;
		uint32_t room = LEASE_KEYS_MAX - keys_held();
		if (target > P->nheld + room)
			target = P->nheld + room;
		if (target > P->nheld) {
			int got = coord_lock_slots(lane_key(p, 0), P->max, P->held, &P->nheld,
			                           target - P->nheld);
			if (got < 0)
				return lost(L);
			if (!giving)
				P->give_to = P->nheld;
			L->grows += (uint64_t)got;
			if (got)
				P->grow_gen = keys_changed(L);
		}
	}
}

/* Unlock what is being given once the host's count is down to it. */
static void give_back(struct seg_lease *L, unsigned p)
{
	struct pool *P = &ld.pool[p];
	uint32_t keep = usable(P);
	if (keep >= P->nheld)
		return;
	if (P->count > keep) {
		P->give_seen = 0;
		return;                  /* not free on this host yet */
	}
	/* A fast path that read the old max just before it was lowered may
	 * still be about to CAS (a few instructions): see the count down to
	 * the new max on two ticks in a row first. */
	if (!P->give_seen) {
		P->give_seen = 1;
		return;
	}
	P->give_seen = 0;
	uint32_t n = P->nheld - keep;
	qsort(P->held, P->nheld, sizeof *P->held, cmp_u32);   /* the highest keys go first */
	if (coord_unlock_slots(P->held, &P->nheld, n) < 0)
		return lost(L);
	P->give_to = P->nheld;
	L->gives += n;
	keys_changed(L);
}

/* Every pool holds nothing (the session is gone, or a new one starts). */
static void pools_forget(void)
{
	for (unsigned p = 0; p < CAP_LANES; p++) {
		ld.pool[p].nheld = ld.pool[p].give_to = 0;
		ld.pool[p].announced = 0;
	}
}

/* Keys a session holds (a promoted standby's, a reconnected leader's
 * adopted), each into its pool. */
static void pools_fill(const uint32_t *keys, uint32_t n)
{
	pools_forget();
	for (uint32_t i = 0; i < n; i++) {
		unsigned p = keys[i] < LEASE_KEY_LANE(0, 0) ? 0 : (keys[i] >> 24) - 1;
		struct pool *P = &ld.pool[p < CAP_LANES ? p : 0];
		if (room_for(P, P->nheld + 1) == 0)
			P->held[P->nheld++] = keys[i];
	}
	for (unsigned p = 0; p < CAP_LANES; p++)
		ld.pool[p].give_to = ld.pool[p].nheld;
}

/* The lanes' pools in fail-open (the host's own lane caps) or with nothing
 * leased (none). */
static void lanes_local(int open)
{
	for (unsigned p = 1; p < CAP_LANES; p++) {
		pool_look(p);
		if (ld.pool[p].max)
			pool_apply(p, ld.pool[p].local = open ? ld.pool[p].max : 0);
	}
	if (gate_needed())
		cap_lanes_set_gate(&g.seg, hot.cap, open ? CAP_GATE_LOCAL : CAP_GATE_SHUT);
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
		local_set(ld.pool[0].local = s == LEASE_OPEN ? g.pol.max_active : 0);
	lanes_local(s == LEASE_OPEN);   /* fail-open: the lanes on this host's terms */
	ld.next_connect_ms = mono_ms() + LEASE_RECONNECT_MS;
}

static void lost(struct seg_lease *L)
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
	ld.published[0] = '\0';
	ld.next_try_ms = 0;
	ld.note = 1;                 /* a census at once (see take_over) */
	local_set(ld.pool[0].local = 0);     /* until slots are leased */
	lanes_local(0);
	/* Our last session's keys that the standby kept: ours again. */
	uint32_t sb = __atomic_load_n(&L->standby_backend, __ATOMIC_ACQUIRE);
	if (sb && lease_standby_alive(L)) {
		uint32_t keys[LEASE_KEYS_MAX], n = 0;
		if (coord_adopt((int)sb, keys, &n, LEASE_KEYS_MAX) < 0) {
			down(L, "the connection was lost");
			return;
		}
		pools_fill(keys, n);
	}
	keys_changed(L);
	L->backend_pid = (uint32_t)coord_backend_pid();
	set_state(L, LEASE_OK);
}

/* What the host does, for `pqshim stat` on other hosts (at most once a second). */
static void publish(struct seg_lease *L, uint32_t count, uint32_t waiting)
{
	uint64_t now = mono_ms();
	if (now < ld.next_publish_ms)
		return;
	char app[64];
	snprintf(app, sizeof app, "pqshim %u %.24s a=%u w=%u", L->classid, L->host, count, waiting);
	if (strcmp(app, ld.published) == 0)
		return;
	ld.next_publish_ms = now + LEASE_PUBLISH_MS;
	if (coord_publish(app) < 0)
		return lost(L);
	snprintf(ld.published, sizeof ld.published, "%s", app);
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
	ld.published[0] = '\0';
	ld.next_publish_ms = 0;      /* say at once that we lead */
	ld.next_try_ms = 0;
	ld.note = 1;                 /* a census at once: wants announced before we led */
	/* What the old leader let the host use is covered by our keys; a raise
	 * above it waits for the next standby (keys_changed). */
	uint64_t w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_ACQUIRE);
	uint32_t cur = (w & SEM_CLOSED) ? 0 : __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max,
	                                                      __ATOMIC_ACQUIRE);
	struct pool *P = &ld.pool[0];
	P->local = cur < P->nheld ? cur : P->nheld;
	local_set(P->local);
	for (unsigned p = 1; p < CAP_LANES; p++) {
		uint32_t m = __atomic_load_n(&hot.cap->lanes.lane[p].max, __ATOMIC_ACQUIRE);
		pool_look(p);
		P = &ld.pool[p];
		if (!P->max)
			continue;
		P->local = m == CAP_LANE_NONE || m > P->nheld ? P->nheld : m;
		pool_apply(p, P->local);
	}
	ld.lane_gen = __atomic_load_n(&hot.cap->lanes.gen, __ATOMIC_ACQUIRE);
	keys_changed(L);
	L->error[0] = '\0';
	L->backend_pid = (uint32_t)coord_backend_pid();
	L->takeovers++;
	set_state(L, LEASE_OK);
	return 0;
}

/* max_active = 0: no cluster cap, nothing to lease (the lanes' caps and
 * the gate, if any, still are). */
static void unleased(struct seg_lease *L)
{
	struct pool *P = &ld.pool[0];
	if (P->nheld) {
		if (coord_unlock_slots(P->held, &P->nheld, P->nheld) < 0)
			return lost(L);
		keys_changed(L);
	}
	P->give_to = 0;
	L->leased = 0;
	cap_set_max(&g.seg, hot.cap, SEM_ACTIVE, g.pol.nlanes ? CAP_UNCAPPED : 0);
	cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, !ld.open);
}

/* A reload that renumbered the lanes: their keys were of the old table. */
static void lanes_renumbered(struct seg_lease *L)
{
	unsigned gen = __atomic_load_n(&hot.cap->lanes.gen, __ATOMIC_ACQUIRE);
	if (gen == ld.lane_gen)
		return;
	ld.lane_gen = gen;
	int any = 0;
	for (unsigned p = 1; p < CAP_LANES; p++) {
		struct pool *P = &ld.pool[p];
		if (P->announced && coord_want(want_key(p), 0) < 0)
			return lost(L);
		P->announced = 0;
		P->local = 0;
		any |= P->nheld != 0;
		if (P->nheld && coord_unlock_slots(P->held, &P->nheld, P->nheld) < 0)
			return lost(L);
		P->give_to = 0;
	}
	if (any)
		keys_changed(L);
}

/* One look of the leader: demand, the census when due, grow or give, the
 * gate, and what the host may use. */
static void lead_tick(struct seg_lease *L, uint64_t now)
{
	lanes_renumbered(L);
	if (!coord_connected())
		return;
	int any_want = 0, others_want = 0;
	for (unsigned p = 0; p < CAP_LANES; p++) {
		struct pool *P = &ld.pool[p];
		pool_look(p);
		if (P->max && room_for(P, P->max) != 0)
			P->max = 0;
		if (P->nheld > P->max && P->give_to > P->max)
			P->give_to = P->max;     /* the cap was lowered (or the lane is gone) */
		if (P->count > P->peak)
			P->peak = P->count;
		int want = P->demand > P->nheld;
		if (want != P->announced) {
			if (coord_want(want_key(p), want) < 0)
				return lost(L);
			P->announced = want;
			ld.next_try_ms = 0;
		}
		any_want |= want;
		others_want |= P->others_want;
	}
	L->wanting = (uint32_t)ld.pool[0].announced;
	int note = coord_wait(0);
	if (note < 0)
		return lost(L);
	note |= ld.note;
	ld.note = 0;
	int gated = gate_needed();
	if (note || ((any_want || others_want) && now >= ld.next_try_ms)
	    || (gated && now >= ld.next_census_ms)) {
		ld.next_try_ms = now + LEASE_RETRY_MS;
		rebalance(L);
		if (!coord_connected())
			return;
	}
	int linger = now >= ld.window_ms + LEASE_LINGER_MS;
	if (linger)
		ld.window_ms = now;
	if (gated) {
		int r = gate_tick(L, ld.others_x, note, usable(&ld.pool[0]) || !g.pol.max_active);
		if (r < 0)
			return lost(L);
		ld.open = r;
	} else {
		ld.open = 1;
		cap_lanes_set_gate(&g.seg, hot.cap, CAP_GATE_LOCAL);
	}
	for (unsigned p = 0; p < CAP_LANES; p++) {
		struct pool *P = &ld.pool[p];
		if (!P->max) {
			if (p == 0) {
				unleased(L);
			} else if (P->nheld) {   /* the lane is no longer capped: its keys go */
				P->give_to = 0;
				give_back(L, p);
			}
			continue;
		}
		if (linger) {
			/* Slots nobody used for a whole window go back while another
			 * host wants them. */
			if (P->others_want && P->demand <= P->count && P->peak < usable(P))
				P->give_to = P->peak;
			P->peak = P->count;
		}
		local_use(L, p, p == 0 && !ld.open ? 0 : usable(P));
		give_back(L, p);
		if (!coord_connected())
			return;
	}
	L->leased = ld.pool[0].nheld;
	L->max_active = g.pol.max_active;
	uint64_t sent = coord_statements();
	L->statements += sent - ld.counted;
	ld.counted = sent;
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
		         L->classid, keys_held());
	} else {
		coord_close();
		set_state(L, LEASE_CONNECTING);
		local_set(ld.pool[0].local = 0);
		lanes_local(0);
		shim_log(LOG_INFO, "process %d leads host %s for the cluster cap (classid %u)",
		         (int)getpid(), L->host, L->classid);
	}

	for (;;) {
		if (g.disabled || g.pid != getpid())
			return;              /* the process is exiting */
		uint64_t now = mono_ms();
		if (!coord_connected()) {
			if (L->state == LEASE_OK)
				lost(L);
			if (now >= ld.next_connect_ms)
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
			lost(L);
		else
			ld.note = r;
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

static int leader_alive(struct seg_lease *L)
{
	uint32_t s = __atomic_load_n(&L->state, __ATOMIC_ACQUIRE);
	return s != LEASE_NONE && L->leader_pid > 0
	       && procid_alive(L->leader_pid, L->leader_start);
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
		free(ld.pool[p].held);
	memset(&ld, 0, sizeof ld);
	__atomic_store_n(&started, 0, __ATOMIC_RELEASE);
}
