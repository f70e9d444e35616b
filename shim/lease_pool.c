/*
 * lease_pool.c - scope = cluster: the leader's pools of keys (lease_int.h),
 * pool 0 the cluster's slots, pool l a capped lane l's: what the host may
 * use of each, when it takes more or gives some back, and the keys it
 * publishes for the standby (lease_seg.h).  The leader's thread only.
 *
 * The host's processes take slots through the segment's semaphore (a
 * lane's through its word) at local speed; the max is the lease.  The
 * leader looks at them every tick (lease.c; a memory read, no round trip):
 * demand is count + waiting.
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
 *    another host wants, slots left unused for LEASE_LINGER_MS go back too
 *    (lead_tick, lease.c).  While nobody else wants, an idle lease stays:
 *    the next transaction needs no round trip.
 */
#include "shim.h"
#include "coord.h"
#include "lease_gate.h"
#include "lease_int.h"
#include "share.h"

#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct lease_leader lease_ld;

_Static_assert(CAP_LANES <= COORD_GROUPS, "a census group per lane");

/* The host's processes may hold n slots (0: none, SEM_CLOSED). */
void pool_local_set(uint32_t n)
{
	if (n == 0) {
		cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, 1);
		return;
	}
	cap_set_max(&g.seg, hot.cap, SEM_ACTIVE, n);
	cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, 0);
}

static uint32_t lane_key(unsigned p, uint32_t k)
{
	return p ? LEASE_KEY_LANE(p, k) : k;
}

uint32_t pool_want_key(unsigned p)
{
	return p ? LEASE_KEY_LANE_WANT(p) : LEASE_KEY_WANT;
}

uint32_t pool_keys_held(void)
{
	uint32_t n = 0;
	for (unsigned p = 0; p < CAP_LANES; p++)
		n += lease_ld.pool[p].nheld;
	return n;
}

/* Publish the leader's keys for the standby (a seqlock: keys_gen is odd
 * while they change) and wake it.  Every pool's keys together never pass
 * LEASE_KEYS_MAX (grow), so the standby mirrors each. */
uint32_t pool_keys_changed(struct seg_lease *L)
{
	__atomic_add_fetch(&L->keys_gen, 1, __ATOMIC_ACQ_REL);
	uint32_t n = 0;
	for (unsigned p = 0; p < CAP_LANES; p++)
		for (uint32_t i = 0; i < lease_ld.pool[p].nheld && n < LEASE_KEYS_MAX; i++)
			__atomic_store_n(&L->keys[n++], lease_ld.pool[p].held[i], __ATOMIC_RELAXED);
	__atomic_store_n(&L->nkeys, n, __ATOMIC_RELAXED);
	uint32_t gen = __atomic_add_fetch(&L->keys_gen, 1, __ATOMIC_ACQ_REL);
	syscall(SYS_futex, &L->keys_gen, FUTEX_WAKE, 1, NULL, NULL, 0);
	return gen;
}

/* The host's processes may hold n of pool p's slots. */
void pool_apply(unsigned p, uint32_t n)
{
	if (p == 0)
		pool_local_set(n);
	else
		cap_lane_set_max(&g.seg, hot.cap, p, n);
}

/* Pool p's max on this host, u wanted: a raise waits until the standby,
 * if one is in place, holds the new keys too (lease_seg.h). */
void pool_local_use(struct seg_lease *L, unsigned p, uint32_t u)
{
	struct pool *P = &lease_ld.pool[p];
	if (u > P->local && (int32_t)(__atomic_load_n(&L->mirrored_gen, __ATOMIC_ACQUIRE)
	                              - P->grow_gen) < 0 && lease_standby_alive(&g.seg, L))
		u = P->local;
	pool_apply(p, u);
	P->local = u;
}

int pool_room(struct pool *P, uint32_t m)
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
uint32_t pool_usable(const struct pool *P)
{
	return P->give_to < P->nheld ? P->give_to : P->nheld;
}

/* Pool p's cap, demand and count this tick (max 0: no pool: the cap is
 * off, or the lane is uncapped, exclusive or not in the table). */
void pool_look(unsigned p)
{
	struct pool *P = &lease_ld.pool[p];
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

/* Ask the coordinator who holds what; take or give accordingly, pool by pool. */
void pool_rebalance(struct seg_lease *L)
{
	struct coord_host h[COORD_MAX_HOSTS];
	/* The turn is taken on the coordinator's clock: every host agrees on
	 * it whatever their own clocks say. */
	uint64_t now_ms = clock_ns(CLOCK_REALTIME) / 1000000u;
	int n = coord_census(h, COORD_MAX_HOSTS, &now_ms);
	if (n < 0)
		return lease_lost(L);
	lease_ld.next_census_ms = mono_ms() + LEASE_ROTATE_MS;
	int self = coord_backend_pid(), me = -1;
	lease_ld.others_x = 0;
	uint32_t others_want = 0, excl_hosts = 0;
	for (int i = 0; i < n; i++) {
		excl_hosts += h[i].xwant != 0;
		if (h[i].pid == self) {
			me = i;
			continue;
		}
		others_want |= h[i].wants;
		lease_ld.others_x |= h[i].xwant;
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
		struct pool *P = &lease_ld.pool[p];
		P->others_want = (others_want >> p) & 1;
		if (!P->max)
			continue;
		h[me].slots[p] = P->nheld;   /* our own view is the exact one */
		struct share_host sh[COORD_MAX_HOSTS];
		for (int i = 0; i < n; i++)
			sh[i] = (struct share_host){ h[i].slots[p], i == me ? P->announced
			                                             : (int)((h[i].wants >> p) & 1) };
		uint32_t share = share_of(sh, n, me, P->max, now_ms, LEASE_ROTATE_MS);
		if (share < pool_usable(P))
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
		uint32_t room = LEASE_KEYS_MAX - pool_keys_held();
		if (target > P->nheld + room)
			target = P->nheld + room;
		if (target > P->nheld) {
			int got = coord_lock_slots(lane_key(p, 0), P->max, P->held, &P->nheld,
			                           target - P->nheld);
			if (got < 0)
				return lease_lost(L);
			if (!giving)
				P->give_to = P->nheld;
			L->grows += (uint64_t)got;
			if (got)
				P->grow_gen = pool_keys_changed(L);
		}
	}
}

/* Unlock what is being given once the host's count is down to it. */
void pool_give_back(struct seg_lease *L, unsigned p)
{
	struct pool *P = &lease_ld.pool[p];
	uint32_t keep = pool_usable(P);
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
		return lease_lost(L);
	P->give_to = P->nheld;
	L->gives += n;
	pool_keys_changed(L);
}

/* Every pool holds nothing (the session is gone, or a new one starts). */
void pools_forget(void)
{
	for (unsigned p = 0; p < CAP_LANES; p++) {
		lease_ld.pool[p].nheld = lease_ld.pool[p].give_to = 0;
		lease_ld.pool[p].announced = 0;
	}
}

/* Keys a session holds (a promoted standby's, a reconnected leader's
 * adopted), each into its pool. */
void pools_fill(const uint32_t *keys, uint32_t n)
{
	pools_forget();
	for (uint32_t i = 0; i < n; i++) {
		unsigned p = keys[i] < LEASE_KEY_LANE(0, 0) ? 0 : (keys[i] >> 24) - 1;
		struct pool *P = &lease_ld.pool[p < CAP_LANES ? p : 0];
		if (pool_room(P, P->nheld + 1) == 0)
			P->held[P->nheld++] = keys[i];
	}
	for (unsigned p = 0; p < CAP_LANES; p++)
		lease_ld.pool[p].give_to = lease_ld.pool[p].nheld;
}

/* The lanes' pools in fail-open (the host's own lane caps) or with nothing
 * leased (none). */
void pool_lanes_local(int open)
{
	for (unsigned p = 1; p < CAP_LANES; p++) {
		pool_look(p);
		if (lease_ld.pool[p].max)
			pool_apply(p, lease_ld.pool[p].local = open ? lease_ld.pool[p].max : 0);
	}
	if (gate_needed())
		cap_lanes_set_gate(&g.seg, hot.cap, open ? CAP_GATE_LOCAL : CAP_GATE_SHUT);
}

/* max_active = 0: no cluster cap, nothing to lease (the lanes' caps and
 * the gate, if any, still are). */
void pool_unleased(struct seg_lease *L)
{
	struct pool *P = &lease_ld.pool[0];
	if (P->nheld) {
		if (coord_unlock_slots(P->held, &P->nheld, P->nheld) < 0)
			return lease_lost(L);
		pool_keys_changed(L);
	}
	P->give_to = 0;
	L->leased = 0;
	cap_set_max(&g.seg, hot.cap, SEM_ACTIVE, g.pol.nlanes ? CAP_UNCAPPED : 0);
	cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, !lease_ld.open);
}

/* A reload that renumbered the lanes: their keys were of the old table. */
void pool_lanes_renumbered(struct seg_lease *L)
{
	unsigned gen = __atomic_load_n(&hot.cap->lanes.gen, __ATOMIC_ACQUIRE);
	if (gen == lease_ld.lane_gen)
		return;
	lease_ld.lane_gen = gen;
	int any = 0;
	for (unsigned p = 1; p < CAP_LANES; p++) {
		struct pool *P = &lease_ld.pool[p];
		if (P->announced && coord_want(pool_want_key(p), 0) < 0)
			return lease_lost(L);
		P->announced = 0;
		P->local = 0;
		any |= P->nheld != 0;
		if (P->nheld && coord_unlock_slots(P->held, &P->nheld, P->nheld) < 0)
			return lease_lost(L);
		P->give_to = 0;
	}
	if (any)
		pool_keys_changed(L);
}
