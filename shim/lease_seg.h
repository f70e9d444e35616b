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
 *   objid   = LEASE_KEY_LANE(l, k)       lane l's slot k, k < its max_active
 *                                        (held like the cluster's slots);
 *   objid   = LEASE_KEY_LANE_WANT(l)     held shared by every host whose lane l
 *                                        has unmet demand;
 *   objid   = LEASE_KEY_GATE, _GATE_STANDBY  the gate of a policy with an
 *                                        exclusive lane (below);
 *   objid   = LEASE_KEY_XWANT            held shared by every leader whose host
 *                                        has an exclusive lane's work waiting.
 * Two policies with different segment names never share a classid unless
 * their names collide in 31 bits; `pqshim stat` shows the classid.
 *
 * This header (core: the segment includes it) holds the shared state and
 * the keys; lease.h the shim's hooks.
 *
 * The standby.  A slot the host uses must stay locked on the coordinator
 * while its leader dies: the server frees the locks of a session that
 * ends, and the host's other processes' work goes on.  So a slot is held
 * in SHARED mode (taken free - an exclusive try, nobody holds it in any
 * mode - then held shared at once, in one statement), by the leader's
 * session and by a second one, the standby's: another process of the
 * host, the holder of the `standby` mutex, which locks (shared) every key
 * the leader's session holds and lets go of those it gave back (it reads
 * them in the segment, `keys`, whenever keys_gen moves; it takes a key
 * only if pg_locks shows the leader's session holding it, in the same
 * statement, so never one another host holds).  Another host can take a slot
 * only when neither session holds it.  The leader lets the host use a
 * newly leased slot only once the standby holds it too (mirrored_gen),
 * while a standby is in place.  When the leader dies, the standby - which
 * polls the leader mutex - takes it over with the keys already in hand;
 * the next process becomes the standby.  A leader that lost its own
 * session (but not its process) adopts the standby's keys when it
 * reconnects.  A leader that comes without keys (no standby, or both
 * died) leases at least as many slots as the host has active before it
 * admits more.  Every process's thread blocks on the standby mutex; only
 * the standby looks at the leader mutex.
 *
 * The gate (a policy with an exclusive lane; lease_gate.c).  An exclusive
 * lane's transaction must overlap no other transaction of any host.  Two
 * keys, G (LEASE_KEY_GATE) and S (LEASE_KEY_GATE_STANDBY):
 *  - a host admits non-exclusive work only while its leader holds G and S
 *    shared and its standby (when in place) holds S shared;
 *  - a host admits an exclusive lane's transaction only while its leader
 *    holds G exclusive and S is held exclusive by its standby (when in
 *    place; else by the leader).
 * So no two hosts admit in conflicting modes, and the death of either
 * session of a host leaves the other holding a key that keeps every
 * conflicting host out.  A host whose exclusive lane has a waiter takes
 * XWANT (and notifies); a leader that sees another host's XWANT admits
 * nothing new (its semaphore closed), lets G and S go once its count is 0,
 * and takes them back only when nobody holds XWANT (the same statement
 * tests it): the exclusive requester, having let its own go once its
 * host's other work drained, gets G exclusive by a try at its next retry,
 * and cannot starve; a host holding G exclusive that sees another's XWANT
 * lets it go after its running exclusive transaction (hosts take turns).
 * Every step is a try: the coordination connection never blocks.  The
 * host's cap says what it may admit: SEM_CLOSED for non-exclusive work,
 * seg_lanes.gate for the exclusive (cap_lanes.h).
 *
 * Invariants:
 *  - at most one live leader per segment: the holder of `leader` (a robust
 *    process-shared mutex: the kernel hands it on, EOWNERDEAD, when the
 *    leader's thread dies, its process exits, execs or is killed), and at
 *    most one standby, the holder of `standby`, never the leader;
 *  - the segment's SEM_ACTIVE max never exceeds the slots the leader holds
 *    on the coordinator (`leased`), except while on_error = fail-open has
 *    put the host cap in force (state LEASE_OPEN);
 *  - a slot is unlocked on the coordinator only once the host's count is
 *    at or below the lowered max: a slot given back is free on this host;
 *  - while a standby is in place (standby_backend != 0), the SEM_ACTIVE max
 *    never exceeds the keys the standby holds as well (mirrored_gen), so a
 *    slot in use stays locked when either session ends, not when both do.
 */
#ifndef PQSHIM_LEASE_SEG_H
#define PQSHIM_LEASE_SEG_H

#include <pthread.h>
#include <stdint.h>

#include "procid.h"

#define LEASE_KEY_WANT      0x40000000u
#define LEASE_KEY_GATE      0x40000001u
#define LEASE_KEY_GATE_STANDBY 0x40000002u
#define LEASE_KEY_XWANT     0x40000003u
#define LEASE_KEY_LANE(l, k) ((uint32_t)(((l) + 1) << 24) | (uint32_t)(k))  /* l < 63, k < 2^24 - 1 */
#define LEASE_LANE_WANT_K   0xffffffu
#define LEASE_KEY_LANE_WANT(l) LEASE_KEY_LANE(l, LEASE_LANE_WANT_K)
#define LEASE_KEY_SLOTS_END 0x40000000u  /* slot keys (the cluster's and the lanes') lie below */
#define LEASE_HOST_MAX      64
#define LEASE_KEYS_MAX      256  /* a host's keys the standby holds too */
#define LEASE_CONNINFO_MAX  192
#define LEASE_ERROR_MAX     256

enum lease_gate_mode { GATE_NONE = 0, GATE_SHARED, GATE_EXCL };

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
	/* The standby (see the top): the next leader, holding the leader's
	 * slot keys too. */
	pthread_mutex_t standby; /* robust, process-shared: held by the standby */
	int32_t standby_pid;
	uint32_t standby_backend; /* its session, once it has mirrored (0: none) */
	uint64_t standby_start;
	uint32_t keys_gen;       /* seqlock over keys: odd while the leader writes them
	                          * (a futex: the standby sleeps on it) */
	uint32_t mirrored_gen;   /* the keys_gen the standby holds every key of */
	uint32_t nkeys;          /* the leader's slot keys (at most LEASE_KEYS_MAX) */
	uint32_t keys[LEASE_KEYS_MAX];
	uint64_t takeovers;      /* standbys promoted with the keys in hand */
	/* The gate (see the top): what the leader wants its standby to hold of
	 * S (enum lease_gate_mode), and what the standby holds (atomic). */
	uint32_t gate_want;
	uint32_t gate_standby;
	uint32_t gate_leader;    /* what the leader holds of G, for the tool */
	uint32_t excl_hosts;     /* hosts that want the gate exclusive (the last census) */
	uint64_t gate_excl;      /* times this host got the gate exclusive */
	uint64_t gate_wait_ns;   /* the last wait for it: XWANT taken -> G and S held */
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

struct segment;
int seg_pid_alive(const struct segment *seg, pid_t pid, uint64_t starttime);   /* segment.h */

/* Is the host's standby in place: it has mirrored, and its process lives
 * in the image that mirrored (one that exec()ed keeps its pid: gone). */
static inline int lease_standby_alive(const struct segment *seg, const struct seg_lease *L)
{
	return __atomic_load_n(&L->standby_backend, __ATOMIC_ACQUIRE)
	       && seg_pid_alive(seg, L->standby_pid, L->standby_start);
}

#endif
