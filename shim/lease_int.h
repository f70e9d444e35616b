/*
 * lease_int.h - what lease.c (the leader's loop, succession, failure) and
 * lease_pool.c (the pools of keys: grow, fair share, give back) lend each
 * other, and nothing else includes: the leader's state, which only its
 * thread touches, and the pools' steps.
 */
#ifndef PQSHIM_LEASE_INT_H
#define PQSHIM_LEASE_INT_H

#include <stdint.h>

#include "lease_seg.h"
#include "segment.h"

#define LEASE_ROTATE_MS    250    /* the remainder of the fair share moves on */

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

/* The leader's state (its thread only; lease_pool.c). */
struct lease_leader {
	struct pool pool[CAP_LANES];
	unsigned lane_gen;        /* the lane table the lanes' pools are of */
	int note;                 /* another host notified while we slept */
	int others_x;             /* another host's exclusive lane waits (last census) */
	int open;                 /* the gate lets the host admit (or no gate) */
	uint64_t window_ms, next_try_ms, next_publish_ms, next_connect_ms, next_census_ms;
	char published[64];
	uint64_t counted;         /* coord_statements() already added to L->statements */
};
extern struct lease_leader lease_ld;

/* ---- lease.c --------------------------------------------------------------- */

/* The coordination connection was lost: the host falls back (on_error). */
void lease_lost(struct seg_lease *L);

/* ---- lease_pool.c ---------------------------------------------------------- */

/* The host's processes may hold n slots (0: none, SEM_CLOSED). */
void pool_local_set(uint32_t n);
/* Pool p's WANT key. */
uint32_t pool_want_key(unsigned p);
/* Every pool's keys together. */
uint32_t pool_keys_held(void);
/* Publish the leader's keys for the standby and wake it: the new keys_gen. */
uint32_t pool_keys_changed(struct seg_lease *L);
/* The host's processes may hold n of pool p's slots. */
void pool_apply(unsigned p, uint32_t n);
/* Pool p's max on this host, u wanted (a raise waits for the standby). */
void pool_local_use(struct seg_lease *L, unsigned p, uint32_t u);
/* Room for m keys in P->held: 0 or -1. */
int pool_room(struct pool *P, uint32_t m);
/* The slots this host may use now: the lease, less what is being given. */
uint32_t pool_usable(const struct pool *P);
/* Pool p's cap, demand and count this tick. */
void pool_look(unsigned p);
/* The census: take or give accordingly, pool by pool. */
void pool_rebalance(struct seg_lease *L);
/* Unlock what pool p is giving once the host's count is down to it. */
void pool_give_back(struct seg_lease *L, unsigned p);
/* Every pool holds nothing / the keys a session holds, each into its pool. */
void pools_forget(void);
void pools_fill(const uint32_t *keys, uint32_t n);
/* The lanes' pools on this host's terms (open: fail-open) or closed. */
void pool_lanes_local(int open);
/* max_active = 0: the cluster's keys go, the semaphore is uncapped. */
void pool_unleased(struct seg_lease *L);
/* A reload renumbered the lanes: their keys go. */
void pool_lanes_renumbered(struct seg_lease *L);

#endif
