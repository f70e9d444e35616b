/*
 * lease_gate.c - scope = cluster with an exclusive lane: the leader's side
 * of the cluster's gate, G and S (lease_seg.h says why two keys and what
 * each session holds; the standby's side is in standby.c).
 *
 * Every step is a try, never a blocking lock: the coordination connection
 * stays free for the lease's statements.  The host's exclusive lane waits
 * (SEM_EXCL in its semaphore word):
 *   take XWANT (and notify: the other hosts look at once) -> once the
 *   host's other work is done, let G and S (shared) go -> try G exclusive
 *   at every retry and whenever another host notifies -> S exclusive by
 *   the standby (or by the leader when no standby is in place) -> the
 *   exclusive may run (seg_lanes.gate OPEN) -> when it is done, all let go.
 * No exclusive here: G and S shared (both or neither, and only while
 * nobody holds XWANT) before non-exclusive work is admitted, and the
 * standby's S shared too; a host that sees another's XWANT admits nothing
 * new and lets G and S go once its count is 0.
 *
 * Invariant: the host's semaphore is open (non-exclusive work admitted)
 * only while the leader holds G and S shared and the standby, when in
 * place, S shared; seg_lanes.gate is OPEN only while the leader holds G
 * exclusive and S is held exclusive by the standby (in place) or leader.
 */
#include "shim.h"
#include "cap_lanes.h"
#include "coord.h"
#include "lease_gate.h"
#include "policy.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define GATE_RETRY_MS 25         /* a host without the gate it needs tries again */

static struct {
	uint32_t g, s;           /* what the leader's session holds of G and S (enum lease_gate_mode) */
	int x;                   /* it holds XWANT */
	uint64_t next_try_ms;
	uint64_t x_since_ns;     /* XWANT taken (the exclusive's wait for the cluster) */
	int opened;              /* seg_lanes.gate OPEN since the last XWANT */
} gt;

int gate_needed(void)
{
	for (int i = 0; i < g.pol.nlanes; i++)
		if (g.pol.lanes[i].exclusive)
			return 1;
	return 0;
}

/* What the standby should hold of S; wake it to look. */
static void standby_should(struct seg_lease *L, uint32_t mode)
{
	if (__atomic_load_n(&L->gate_want, __ATOMIC_RELAXED) == mode)
		return;
	__atomic_store_n(&L->gate_want, mode, __ATOMIC_RELEASE);
	syscall(SYS_futex, &L->keys_gen, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* What the host's standby holds of S, as it published it: nothing once it
 * is gone (it ended holding S exclusive, after an exclusive ran: its word
 * stays, but its session, and S with it, went). */
static uint32_t standby_holds(struct seg_lease *L)
{
	return lease_standby_alive(&g.seg, L) ? __atomic_load_n(&L->gate_standby, __ATOMIC_ACQUIRE)
	                                      : GATE_NONE;
}

static void set_gate(enum cap_gate gate)
{
	cap_lanes_set_gate(&g.seg, hot.cap, gate);
}

static void published(struct seg_lease *L)
{
	__atomic_store_n(&L->gate_leader, gt.g, __ATOMIC_RELAXED);
}

void gate_forget(struct seg_lease *L, uint32_t standby_held)
{
	gt.g = GATE_NONE;
	gt.s = standby_held;
	gt.x = 0;
	gt.opened = 0;
	gt.next_try_ms = 0;
	published(L);
	if (gate_needed())
		set_gate(CAP_GATE_SHUT);   /* no exclusive admitted on what the last leader held */
}

/* Let go of a key the leader holds (mode *held): 0, or -1 lost. */
static int let_go(uint32_t key, uint32_t *held)
{
	if (*held == GATE_NONE)
		return 0;
	if (coord_unlock_key(key, *held == GATE_EXCL) < 0)
		return -1;
	*held = GATE_NONE;
	return 0;
}

static int due(int note)
{
	uint64_t now = mono_ms();
	if (!note && now < gt.next_try_ms)
		return 0;
	gt.next_try_ms = now + GATE_RETRY_MS;
	return 1;
}

/* The host's non-exclusive work running, with its semaphore closed first
 * (no fast path lands after: its CAS fails on the changed word), so that
 * a 0 stays 0 while the gate's shared keys go. */
static uint32_t others_running(void)
{
	cap_set_closed(&g.seg, hot.cap, SEM_ACTIVE, 1);
	uint64_t w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST);
	return sem_count(w) - __atomic_load_n(&hot.cap->lanes.excl_active, __ATOMIC_SEQ_CST);
}

/* The gate is ours and another host's exclusive lane waits: ours that runs
 * ends, then the gate goes (and we ask again after a pause, so that the
 * other host, notified, takes it first): the hosts' exclusive work takes
 * turns, one transaction each, instead of one host's stream keeping it. */
static int yield_turn(struct seg_lease *L)
{
	set_gate(CAP_GATE_SHUT);         /* under the cap's lock: no exclusive admitted after */
	if (__atomic_load_n(&hot.cap->lanes.excl_active, __ATOMIC_ACQUIRE))
		return 0;
	if (let_go(LEASE_KEY_GATE, &gt.g) < 0 || let_go(LEASE_KEY_GATE_STANDBY, &gt.s) < 0
	    || coord_unlock_key(LEASE_KEY_XWANT, 0) < 0)
		return -1;
	standby_should(L, GATE_NONE);
	gt.x = 0;
	gt.next_try_ms = mono_ms() + 2 * GATE_RETRY_MS;
	return 0;
}

/* The host's exclusive lane waits or runs. */
static int tick_exclusive(struct seg_lease *L, int others_x, int note,
                          uint32_t lease)
{
	if (gt.g == GATE_EXCL && gt.opened && others_x)
		return yield_turn(L);
	if (!gt.x) {
		if (coord_want(LEASE_KEY_XWANT, 1) < 0)
			return -1;
		gt.x = 1;
		gt.x_since_ns = clock_ns(CLOCK_MONOTONIC);
		gt.opened = 0;
	}
	/* the host's other work done (SEM_EXCL admits no more): shared goes */
	if ((gt.g == GATE_SHARED || gt.s == GATE_SHARED) && others_running() == 0) {
		if ((gt.g == GATE_SHARED && let_go(LEASE_KEY_GATE, &gt.g) < 0)
		    || (gt.s == GATE_SHARED && let_go(LEASE_KEY_GATE_STANDBY, &gt.s) < 0))
			return -1;
		standby_should(L, GATE_NONE);
	}
	/* S without G (a promoted standby's) once nothing exclusive runs here:
	 * it goes, or a host holding G would wait on us while we wait on it */
	if (gt.g != GATE_EXCL && gt.s == GATE_EXCL
	    && !__atomic_load_n(&hot.cap->lanes.excl_active, __ATOMIC_ACQUIRE)
	    && let_go(LEASE_KEY_GATE_STANDBY, &gt.s) < 0)
		return -1;
	if (gt.g == GATE_NONE && gt.s != GATE_SHARED && mono_ms() >= gt.next_try_ms && due(note)) {
		int r = coord_try_key(LEASE_KEY_GATE, 1, 0, 0, 0);
		if (r < 0)
			return -1;
		if (r)
			gt.g = GATE_EXCL;
	}
	int ok = 0;
	if (gt.g == GATE_EXCL) {
		if (lease_standby_alive(&g.seg, L)) {
			/* S is the standby's: hand it over (G exclusive keeps everyone
			 * out meanwhile) */
			if (gt.s == GATE_EXCL && let_go(LEASE_KEY_GATE_STANDBY, &gt.s) < 0)
				return -1;
			standby_should(L, GATE_EXCL);
			ok = __atomic_load_n(&L->gate_standby, __ATOMIC_ACQUIRE) == GATE_EXCL;
		} else {
			if (gt.s == GATE_NONE) {
				int r = coord_try_key(LEASE_KEY_GATE_STANDBY, 1, 0, 0, 0);
				if (r < 0)
					return -1;
				if (r)
					gt.s = GATE_EXCL;
			}
			ok = gt.s == GATE_EXCL;
		}
	}
	ok = ok && lease > 0;            /* caps nest: it needs a cluster slot too */
	if (ok && !gt.opened) {
		gt.opened = 1;
		L->gate_excl++;
		L->gate_wait_ns = clock_ns(CLOCK_MONOTONIC) - gt.x_since_ns;
	}
	set_gate(ok ? CAP_GATE_OPEN : CAP_GATE_SHUT);
	return 0;
}

/* No exclusive here: let go of what it held; G and S shared to admit. */
static int tick_shared(struct seg_lease *L, int others_x, int note)
{
	set_gate(CAP_GATE_SHUT);
	if (__atomic_load_n(&L->gate_want, __ATOMIC_RELAXED) == GATE_EXCL)
		standby_should(L, GATE_NONE);    /* the exclusive is done */
	if (gt.g == GATE_EXCL && let_go(LEASE_KEY_GATE, &gt.g) < 0)
		return -1;
	if (gt.s == GATE_EXCL && let_go(LEASE_KEY_GATE_STANDBY, &gt.s) < 0)
		return -1;
	if (gt.x) {
		if (coord_unlock_key(LEASE_KEY_XWANT, 0) < 0)
			return -1;
		gt.x = 0;
	}
	if (others_x) {
		/* another host's exclusive waits: nothing new; let go once done */
		if ((gt.g == GATE_SHARED || gt.s == GATE_SHARED) && others_running() == 0) {
			if ((gt.g == GATE_SHARED && let_go(LEASE_KEY_GATE, &gt.g) < 0)
			    || (gt.s == GATE_SHARED && let_go(LEASE_KEY_GATE_STANDBY, &gt.s) < 0))
				return -1;
			standby_should(L, GATE_NONE);
		}
		return 0;
	}
	if (gt.g != GATE_SHARED && standby_holds(L) != GATE_EXCL && due(note)) {
		int r = coord_gate_share(gt.s == GATE_SHARED);
		if (r < 0)
			return -1;
		if (r)
			gt.g = gt.s = GATE_SHARED;
	}
	if (gt.g != GATE_SHARED)
		return 0;
	standby_should(L, GATE_SHARED);
	return !lease_standby_alive(&g.seg, L)
	       || __atomic_load_n(&L->gate_standby, __ATOMIC_ACQUIRE) == GATE_SHARED;
}

int gate_tick(struct seg_lease *L, int others_x, int note, uint32_t lease)
{
	uint64_t w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_ACQUIRE);
	if (w & SEM_EXCL) {
		/* an exclusive grant to a stopped waiter holds every host back, and
		 * no other host's waiter can see it: taken back here too */
		cap_lanes_revoke_stopped(&g.seg, hot.cap);
		w = __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_ACQUIRE);
	}
	int r = (w & SEM_EXCL) ? tick_exclusive(L, others_x, note, lease)
	                       : tick_shared(L, others_x, note);
	published(L);
	return r;
}
