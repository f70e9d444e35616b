/*
 * lease_seg.h - scope = cluster: one cap across hosts, kept by PostgreSQL's
 * session advisory locks on the coordinator, leased to hosts so that the
 * fast path stays local.
 *
 * A host is a segment.  Its processes take slots through the segment's
 * SEM_ACTIVE semaphore exactly as with scope = host; only the semaphore's
 * max changes meaning: it is the number of cluster slots this host holds
 * (its lease) as advisory locks on the coordinator, and SEM_CLOSED while it
 * holds none (max = 0 would mean "no cap").  One process of the host, the
 * leader, runs the coordination thread (lease.c) that holds those locks on
 * its own libpq connection (coord.c), grows the lease while processes wait
 * and gives slots back when they stay unused or when the host is above its
 * fair share.
 *
 * Keys (readable in pg_locks: locktype advisory, objsubid 2, the two-int4
 * form pg_try_advisory_lock(classid, objid), in the coordinator's database):
 *   classid = lease_classid(segment name): FNV-1a of the name, 31 bits;
 *   objid   = 0 .. max_active-1          the cluster's slots (exclusive);
 *   objid   = LEASE_KEY_WANT             held shared by every host whose
 *                                        processes wait (unmet demand);
 *   objid   = LEASE_KEY_LANE(l, k)       lanes to come: lane l's slot k;
 *   objid   = LEASE_KEY_GATE             lanes to come: every host with work
 *                                        holds it shared, an exclusive lane
 *                                        exclusive (PostgreSQL's own
 *                                        shared/exclusive advisory locks).
 * Two policies with different segment names never share a classid unless
 * their names collide in 31 bits; `pqshim stat` shows the classid.
 *
 * This header (core: the segment includes it) holds the shared state and
 * the keys; lease.h the shim's hooks.
 *
 * Invariants:
 *  - at most one live leader per segment: the holder of `leader` (a robust
 *    process-shared mutex: the kernel hands it on, EOWNERDEAD, when the
 *    leader's thread dies, its process exits, execs or is killed);
 *  - the segment's SEM_ACTIVE max never exceeds the slots the leader holds
 *    on the coordinator (`leased`), except while on_error = fail-open has
 *    put the host cap in force (state LEASE_OPEN);
 *  - a slot is unlocked on the coordinator only once the host's count is
 *    at or below the lowered max: a slot given back is free on this host.
 */
#ifndef PQSHIM_LEASE_SEG_H
#define PQSHIM_LEASE_SEG_H

#include <pthread.h>
#include <stdint.h>

#define LEASE_KEY_WANT      0x40000000u
#define LEASE_KEY_GATE      0x40000001u
#define LEASE_KEY_LANE(l, k) ((uint32_t)(((l) + 1) << 24) | (uint32_t)(k))  /* l < 63, k < 2^24 */
#define LEASE_HOST_MAX      64
#define LEASE_CONNINFO_MAX  192
#define LEASE_ERROR_MAX     256

enum lease_state {
	LEASE_NONE = 0,          /* no leader has run yet */
	LEASE_CONNECTING,        /* the leader is reaching the coordinator */
	LEASE_OK,                /* leases held on the coordinator */
	LEASE_CLOSED,            /* coordinator unreachable, on_error = fail-closed */
	LEASE_OPEN,              /* coordinator unreachable, on_error = fail-open: host cap */
};

/* In the segment's header (segment.h).  Written by the leader; read by
 * every process (lease_check) and by the tool. */
struct seg_lease {
	uint32_t init;           /* 0, 1 while the mutex is set up, 2 (atomic) */
	uint32_t state;          /* enum lease_state (atomic) */
	pthread_mutex_t leader;  /* robust, process-shared: held by the leader */
	int32_t leader_pid;
	uint32_t classid;
	uint64_t leader_start;   /* /proc starttime: pid + starttime = identity */
	uint32_t leased;         /* advisory locks held on the coordinator */
	uint32_t max_active;     /* the cluster's cap, as the leader read it */
	uint32_t wanting;        /* 1 while this host announces unmet demand */
	uint32_t backend_pid;    /* the leader's session on the coordinator */
	uint64_t since_ns;       /* CLOCK_REALTIME of the last state change */
	uint64_t grows, gives;   /* slots locked / unlocked on the coordinator */
	uint64_t statements;     /* statements sent to the coordinator */
	uint64_t leaders;        /* leaders elected so far */
	char host[LEASE_HOST_MAX];
	char coordinator[LEASE_CONNINFO_MAX];  /* host port dbname user: never a password */
	char error[LEASE_ERROR_MAX];           /* the coordinator's last error */
};

/* The classid of a segment name (FNV-1a, 31 bits: a positive int4). */
static inline uint32_t lease_classid(const char *segment)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)segment; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h & 0x7fffffffu;
}

static inline const char *lease_state_word(uint32_t s)
{
	static const char *const words[] = { "none", "connecting", "ok", "fail-closed", "fail-open" };
	return s < sizeof words / sizeof words[0] ? words[s] : "?";
}

#endif
