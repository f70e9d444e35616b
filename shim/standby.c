/*
 * standby.c - scope = cluster: the host's standby, the second session that
 * holds every slot key of the leader's again, so that a slot in use stays
 * locked on the coordinator when the leader's session ends (the design is
 * in lease_seg.h; the election in lease.c).
 */
#include "shim.h"
#include "coord.h"
#include "procid.h"
#include "standby.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STANDBY_LOOK_MS    10     /* the standby looks at the leader mutex */
#define STANDBY_RECONNECT_MS 500

int standby_take(pthread_mutex_t *m, int try)
{
	int r = try ? pthread_mutex_trylock(m) : pthread_mutex_lock(m);
	if (r == EOWNERDEAD) {
		pthread_mutex_consistent(m);
		r = 0;
	}
	return r;
}

/* The standby's keys: the leader's, as published (0, or -1 while they
 * change). */
static int read_keys(struct seg_lease *L, uint32_t *keys, uint32_t *n, uint32_t *gen)
{
	uint32_t g1 = __atomic_load_n(&L->keys_gen, __ATOMIC_ACQUIRE);
	if (g1 & 1)
		return -1;
	uint32_t m = __atomic_load_n(&L->nkeys, __ATOMIC_RELAXED);
	if (m > LEASE_KEYS_MAX)
		return -1;
	for (uint32_t i = 0; i < m; i++)
		keys[i] = __atomic_load_n(&L->keys[i], __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&L->keys_gen, __ATOMIC_RELAXED) != g1)
		return -1;
	*n = m;
	*gen = g1;
	return 0;
}

static uint32_t held_s;           /* what this standby's session holds of S (lease_seg.h) */

uint32_t standby_gate_held(void)
{
	return held_s;
}

static void gate_lost(struct seg_lease *L)
{
	held_s = GATE_NONE;
	__atomic_store_n(&L->gate_standby, GATE_NONE, __ATOMIC_RELEASE);
}

/* Hold S as the leader wants (lease_gate.c): shared only while the leader
 * holds S shared, exclusive only while it holds G exclusive (so never
 * against the leader, nor for a leader that lost its session).  0, -1 lost. */
static int follow_gate(struct seg_lease *L)
{
	uint32_t want = __atomic_load_n(&L->gate_want, __ATOMIC_ACQUIRE);
	if (want == held_s)
		return 0;
	if (held_s != GATE_NONE) {
		if (coord_unlock_key(LEASE_KEY_GATE_STANDBY, held_s == GATE_EXCL) < 0)
			return -1;
		held_s = GATE_NONE;
	}
	if (want != GATE_NONE) {
		int excl = want == GATE_EXCL;
		int r = coord_try_key(LEASE_KEY_GATE_STANDBY, excl, (int)L->backend_pid,
		                      excl ? LEASE_KEY_GATE : LEASE_KEY_GATE_STANDBY, excl);
		if (r < 0)
			return -1;
		if (r)
			held_s = want;
	}
	__atomic_store_n(&L->gate_standby, held_s, __ATOMIC_RELEASE);
	return 0;
}

int standby_run(struct seg_lease *L)
{
	char app[64], host[LEASE_HOST_MAX] = "?", err[LEASE_ERROR_MAX];
	uint32_t keys[LEASE_KEYS_MAX], n, gen, done;
	uint64_t next_connect = 0;
	gethostname(host, sizeof host - 1);
	snprintf(app, sizeof app, COORD_STANDBY_PREFIX "%u %.32s", lease_classid(g.seg.name), host);
	__atomic_store_n(&L->standby_backend, 0, __ATOMIC_RELEASE);
	/* what this standby holds of S, not what a gone one said last */
	__atomic_store_n(&L->gate_standby, held_s, __ATOMIC_RELEASE);
	L->standby_start = procid_starttime(getpid());
	L->standby_pid = getpid();
	done = __atomic_load_n(&L->keys_gen, __ATOMIC_ACQUIRE) - 2;   /* mirror at once */
	for (;;) {
		if (g.disabled || g.pid != getpid())
			return 0;
		if (standby_take(&L->leader, 1) == 0) {
			L->standby_pid = 0;
			__atomic_store_n(&L->standby_backend, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&L->gate_standby, GATE_NONE, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&L->standby);
			return 1;
		}
		uint32_t seen = __atomic_load_n(&L->keys_gen, __ATOMIC_ACQUIRE);
		if (!coord_connected()) {
			__atomic_store_n(&L->standby_backend, 0, __ATOMIC_RELEASE);
			gate_lost(L);
			if (mono_ms() >= next_connect) {
				if (coord_connect(g.pol.coordinator, app, lease_classid(g.seg.name), err,
				                  sizeof err) != 0)
					next_connect = mono_ms() + STANDBY_RECONNECT_MS;
				else
					done = seen - 2;
			}
		} else if (coord_wait(0) < 0) {
			__atomic_store_n(&L->standby_backend, 0, __ATOMIC_RELEASE);
			gate_lost(L);
			continue;            /* lost: its locks went with it */
		} else if (__atomic_load_n(&L->state, __ATOMIC_ACQUIRE) == LEASE_OK && L->backend_pid
		           && follow_gate(L) < 0) {
			continue;            /* lost (the next turn says so) */
		} else if (seen != done && __atomic_load_n(&L->state, __ATOMIC_ACQUIRE) == LEASE_OK
		           && L->backend_pid && read_keys(L, keys, &n, &gen) == 0) {
			/* (while the leader has lost its session, we keep what we hold) */
			int m = coord_mirror(keys, n, (int)L->backend_pid);
			if (m < 0)
				continue;
			if (m == 0) {
				done = gen;
				__atomic_store_n(&L->mirrored_gen, gen, __ATOMIC_RELEASE);
				__atomic_store_n(&L->standby_backend, (uint32_t)coord_backend_pid(),
				                 __ATOMIC_RELEASE);
				continue;        /* look again at once: more may have changed */
			}
			/* not done (the statement failed): not mirrored, again after a pause */
		}
		struct timespec ts = { 0, STANDBY_LOOK_MS * 1000000L };
		syscall(SYS_futex, &L->keys_gen, FUTEX_WAIT, seen, &ts, NULL, 0);
	}
}
