/*
 * cap_lanes.h - lanes (issue 14): named caps inside the global one (the
 * layout, struct seg_lanes, is in cap.h).  Lane 0 is the default lane,
 * lane i + 1 the policy's lane i.  This header owns the lane word, the
 * one-CAS-each fast paths that take and give back a lane's slot without the
 * lock, and the lanes' slow paths (cap_lanes.c).
 *
 * While a policy has lanes, the SEM_ACTIVE word carries SEM_LANES (the
 * plain fast paths, sem_try_acquire/sem_release, then fail) and every
 * active slot is also counted in the lane it was taken in: the connection
 * record's lane_held says which (lane + 1, | LANE_HELD_EXCL).  The global
 * max is then never 0: "no cap" is CAP_UNCAPPED, so that active work is
 * always counted (an exclusive lane must see it).
 *
 * The lane word is slots held (24 bits) | LW_FROZEN | LW_SLOW | epoch, as
 * the semaphore word.  A statement whose lane and the global cap both have
 * room, with nobody queued and no exclusive lane waiting or running, takes
 * its slot with a CAS on the lane word and then one on the global word, and
 * gives it back with a CAS on the global word and then one on the lane's:
 *  - nobody queued: every lane waiter counts in the global word's waiting
 *    field, so the acquirer's global CAS fails once anyone queues, and the
 *    releaser's too (the slot is then handed on under the lock);
 *  - exclusive: from the moment an exclusive waiter queues until the
 *    exclusive holder is done, the global word carries SEM_EXCL (set under
 *    the lock, in the same CAS that admits an exclusive newcomer): no CAS of
 *    a fast path lands meanwhile, and the exclusive one is admitted when the
 *    global count, which every fast holder is in, is 0.  An exclusive lane's
 *    word carries LW_SLOW: its slots are always taken under the lock;
 *  - an acquirer that got its lane but not the global slot gives the lane
 *    back (in the lane word's epoch) and takes the slow path, whose lock
 *    holder admits whoever that transient count held back;
 *  - a releaser gives the global slot back first: a waiter that queued
 *    because the lane was still full is seen after the lane CAS (the
 *    releaser reads the global word again, the waiter looks at the lane
 *    word again after queueing, under the lock) and admitted under the lock.
 * Against an audit (cap.h): each fast path reads both words before it
 * announces itself in the hold (ACQUIRING, RELEASING) and only CASes words
 * of those epochs; the audit freezes the lane words with the global one,
 * counts a lane's holders from the holds it counts (HELD, RELEASING,
 * RELEASING_COUNTED) and thaws every word with the next epoch.  So a fast
 * path that an audit judged finds out: an acquirer's last CAS (ACQUIRING ->
 * HELD) fails, and a releaser's (RELEASING -> NONE) fails and it gives both
 * counts back under the lock, as one whose CAS did not land.
 *
 * For a private cap (scope = process) every lane word carries LW_SLOW: all
 * lane slots are taken under the (process-private) lock, as a reload that
 * renumbers the lanes recounts them from this process's records without an
 * audit.
 *
 * Invariants (under the lock, outside an audit):
 *  - sems[SEM_ACTIVE] count == live holders (cap.h), and lane i's word
 *    count == live holders whose lane_held names lane i, plus granted lane
 *    waiters of lane i not yet awake, except fast-path CASes in flight;
 *  - excl_active <= 1, and when it is 1 the count is 1: nothing else is
 *    counted (nested connections of the holder's thread share its slot,
 *    HOLD_SHARED, uncounted, as `nested` says);
 *  - SEM_EXCL is set iff excl_waiting + excl_active > 0: no waiter or
 *    newcomer of any other kind is admitted then, so the exclusive waiter
 *    is admitted as soon as the count reaches 0 (it cannot starve);
 *  - a non-exclusive waiter is admitted when the global count is below
 *    max, its lane's below its max (0: none), no exclusive holds or waits;
 *    among those that may be admitted, higher priority first, FIFO
 *    (ticket) within a priority.  That is strict: under a constant load of
 *    a higher priority a lower one may wait until its wait_timeout, and
 *    then fails (53300, naming its lane) at its deadline;
 *  - nwaiting, lane[i].waiting and excl_waiting count the QUEUED and
 *    CANCELLED entries, as the global word's waiting field does (a
 *    cancelled entry is swept by the next holder of the lock; every lane
 *    wait ends by its deadline).
 * scope = cluster (lease_seg.h): the global max is the host's lease, SEM_CLOSED
 * while it may admit nothing (no lease, or another host's exclusive lane
 * wants the gate); a capped lane's max is the lane's slots the host holds
 * (CAP_LANE_NONE, with LW_SLOW, while none); an exclusive lane's waiter is
 * admitted only while seg_lanes.gate is not CAP_GATE_SHUT (the leader holds
 * the cluster's gate exclusive for this host).
 */
#ifndef PQSHIM_CAP_LANES_H
#define PQSHIM_CAP_LANES_H

#include "cap.h"

#define LW_COUNT_MASK    SEM_COUNT_MASK
#define LW_FROZEN        (1ull << 48)   /* an audit counts: acquirers go to the lock */
#define LW_SLOW          (1ull << 49)   /* exclusive lane, or a private cap: never fast */
#define LW_EPOCH_SHIFT   51             /* bumped by every audit's thaw */
#define LW_STATE_MASK    ((1ull << LW_EPOCH_SHIFT) - 1)
#define lw_epoch(w)      ((w) >> LW_EPOCH_SHIFT)
#define lw_count(w)      ((uint32_t)((w) & LW_COUNT_MASK))

/* The global word as a fast path of a lane may take a slot from: lanes in
 * force, nothing queued, no exclusive, not frozen or closed, count < max
 * (one compare: every other bit lies above the count's). */
static inline int lane_global_room(uint64_t w, uint64_t max)
{
	return (w & SEM_STATE_MASK) - SEM_LANES < max;
}

/*
 * Take an active slot in `lane` of the table of generation `gen` (lanes.gen
 * when the caller found the lane) without the lock: 1 if held (*hold HELD,
 * *lane_held lane + 1); 0 if the caller must take the slow path
 * (cap_lane_acquire, which it always does: see the top).  A reload that
 * renumbers the lanes freezes the lane words, then bumps gen, then thaws:
 * a word read unfrozen here after the bump fails the gen test below, one
 * read before it fails its CAS, so no slot is taken in the wrong lane.
 */
static inline int lane_try_acquire(struct seg_cap *cap, unsigned lane, unsigned gen,
                                   uint8_t *hold, uint8_t *lane_held)
{
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	if (lane >= CAP_LANES)
		return 0;
	struct seg_lane *l = &cap->lanes.lane[lane];
	uint64_t w0 = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST), w = w0;
	uint64_t lw0 = __atomic_load_n(&l->word, __ATOMIC_SEQ_CST), lw = lw0;
	uint64_t max = __atomic_load_n(&s->max, __ATOMIC_RELAXED);
	uint64_t lmax = __atomic_load_n(&l->max, __ATOMIC_RELAXED);
	if (!lmax)
		lmax = LW_COUNT_MASK;
	if (!lane_global_room(w0, max) || (lw0 & LW_STATE_MASK) >= lmax
	    || __atomic_load_n(&cap->lanes.gen, __ATOMIC_SEQ_CST) != gen)
		return 0;
	/* lane_held first: an audit that counts our HELD hold reads it (the
	 * hold's store below orders it) */
	__atomic_store_n(lane_held, (uint8_t)(lane + 1), __ATOMIC_RELAXED);
	__atomic_store_n(hold, HOLD_ACQUIRING, __ATOMIC_SEQ_CST);
	for (;;) {
		if (lw_epoch(lw ^ lw0) || (lw & LW_STATE_MASK) >= lmax)
			goto none;
		if (__atomic_compare_exchange_n(&l->word, &lw, lw + 1, 1, __ATOMIC_SEQ_CST,
		                                __ATOMIC_SEQ_CST))
			break;
	}
	for (;;) {
		if (sem_epoch(w ^ w0) || !lane_global_room(w, max))
			goto undo;
		if (__atomic_compare_exchange_n(&s->word, &w, w + 1, 1, __ATOMIC_SEQ_CST,
		                                __ATOMIC_SEQ_CST)) {
			uint8_t acq = HOLD_ACQUIRING;
			/* Fails only if an audit judged us meanwhile: not counted. */
			if (__atomic_compare_exchange_n(hold, &acq, HOLD_HELD, 0, __ATOMIC_SEQ_CST,
			                                __ATOMIC_RELAXED))
				return 1;
			goto none;
		}
	}
undo:
	/* Give the lane back in its epoch (an audit since has not counted us). */
	lw = __atomic_load_n(&l->word, __ATOMIC_SEQ_CST);
	while (!lw_epoch(lw ^ lw0) && lw_count(lw)
	       && !__atomic_compare_exchange_n(&l->word, &lw, lw - 1, 1, __ATOMIC_SEQ_CST,
	                                       __ATOMIC_SEQ_CST))
		;
none:
	__atomic_store_n(hold, HOLD_NONE, __ATOMIC_SEQ_CST);
	__atomic_store_n(lane_held, 0, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Give a lane's active slot back without the lock, claiming it first
 * (HELD -> RELEASING) as sem_release does.  SEM_RELEASE_DONE; NOT_MINE;
 * or SLOW: cap_lane_release must finish - with the hold still claimed it
 * gives both counts back, with the hold NONE (both landed, but someone
 * queued meanwhile) it only admits (cap_lane_release says so too).
 */
static inline enum sem_release_result lane_release(struct seg_cap *cap, uint8_t *hold,
                                                   uint8_t *lane_held)
{
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	unsigned held = __atomic_load_n(lane_held, __ATOMIC_SEQ_CST);
	unsigned lane = (held & ~LANE_HELD_EXCL) - 1;
	int fast = !(held & LANE_HELD_EXCL) && lane < CAP_LANES;
	struct seg_lane *l = &cap->lanes.lane[fast ? lane : 0];
	uint64_t w0 = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST), w = w0;
	uint64_t lw0 = __atomic_load_n(&l->word, __ATOMIC_SEQ_CST), lw = lw0;
	uint8_t h = HOLD_HELD;
	if (!__atomic_compare_exchange_n(hold, &h, HOLD_RELEASING, 0, __ATOMIC_SEQ_CST,
	                                 __ATOMIC_RELAXED))
		return SEM_RELEASE_NOT_MINE;
	if (!fast || (lw0 & LW_SLOW))
		return SEM_RELEASE_SLOW;         /* exclusive, or a private cap: under the lock */
	for (;;) {
		/* held (count >= 1), lanes, nobody queued, no exclusive, not frozen */
		if (sem_epoch(w ^ w0) || (w & SEM_STATE_MASK) - SEM_LANES - 1 >= SEM_COUNT_MASK)
			return SEM_RELEASE_SLOW;
		if (__atomic_compare_exchange_n(&s->word, &w, w - 1, 1, __ATOMIC_SEQ_CST,
		                                __ATOMIC_SEQ_CST))
			break;
	}
	for (;;) {
		/* a new epoch: an audit counted us (RELEASING_COUNTED) */
		if (lw_epoch(lw ^ lw0) || !lw_count(lw))
			return SEM_RELEASE_SLOW;
		if (__atomic_compare_exchange_n(&l->word, &lw, lw - 1, 1, __ATOMIC_SEQ_CST,
		                                __ATOMIC_SEQ_CST))
			break;
	}
	uint8_t rel = HOLD_RELEASING;
	/* Fails only if an audit counted us after our CASes: we owe both. */
	if (!__atomic_compare_exchange_n(hold, &rel, HOLD_NONE, 0, __ATOMIC_SEQ_CST,
	                                 __ATOMIC_RELAXED))
		return SEM_RELEASE_SLOW;
	__atomic_store_n(lane_held, 0, __ATOMIC_RELAXED);
	/* Someone queued after our global CAS, maybe for this lane's room. */
	if (__atomic_load_n(&s->word, __ATOMIC_SEQ_CST) & (SEM_WAIT_MASK << SEM_WAIT_SHIFT))
		return SEM_RELEASE_SLOW;
	return SEM_RELEASE_DONE;
}

/* The fast path's release of an active slot: a lane's, or the plain one
 * (inline in its caller, as sem_release was before lanes). */
static inline __attribute__((always_inline)) enum sem_release_result
cap_release_active(struct seg_cap *cap, uint8_t *hold, uint8_t *lane_held)
{
	if (__builtin_expect(__atomic_load_n(lane_held, __ATOMIC_RELAXED) != 0, 0))
		return lane_release(cap, hold, lane_held);
	return sem_release(&cap->sems[SEM_ACTIVE], hold);
}

/* ---- the slow paths (cap_lanes.c) ----------------------------------------- */

struct policy;
struct segment;

/* Put the policy's lanes in force (none: turn them off).  Carries each
 * lane's statistics and holders over by name; a lane that is gone gives
 * its holders' slots to the default lane's count.  `records`: the segment
 * whose connection records hold the slots (NULL: none), for a private
 * cap only this process's.  The caller sets the global max first
 * (CAP_UNCAPPED for none when there are lanes). */
void cap_lanes_configure(struct segment *seg, struct seg_cap *cap, const struct policy *p,
                         struct segment *records);

/* The lane of that name in the table in force (0, the default, if none). */
unsigned cap_lane_find(const struct seg_cap *cap, const char *name);

/*
 * Take an active slot in the lane of that name ("" or unknown: the
 * default; found under the lock, in the table in force), waiting in line
 * at most timeout_ns.
 * *lane_held records the lane the slot counts in (seg_conn.lane_held).
 * try_only: never wait, CAP_BUSY instead.  holds_other as for
 * cap_acquire_slow (CAP_NESTED instead of waiting).
 */
enum cap_result cap_lane_acquire(struct segment *seg, struct seg_cap *cap, const char *lane,
                                 uint8_t *hold, uint8_t *lane_held, uint32_t proc, int tid,
                                 uint64_t timeout_ns, int holds_other, int try_only,
                                 uint64_t *waited_ns);

/* The same, calling look() (if not NULL) between the slices of a wait in
 * line (as cap_wait_on's caller looks around); a look that answers 1 ends
 * the wait now, as its deadline would (CAP_TIMEOUT, unless granted at that
 * moment).  Every wait ends by its deadline, the lock's included. */
enum cap_result cap_lane_acquire_look(struct segment *seg, struct seg_cap *cap, const char *lane,
                                      uint8_t *hold, uint8_t *lane_held, uint32_t proc,
                                      int tid, uint64_t timeout_ns, int holds_other,
                                      int try_only, uint64_t *waited_ns, int (*look)(void));

/* Give an active slot back under the lock: held or claimed (HELD,
 * RELEASING, RELEASING_COUNTED), both counts - the global one and its
 * lane's; NONE (lane_release gave both back already): only admit the
 * waiters that queued meanwhile. */
void cap_lane_release(struct segment *seg, struct seg_cap *cap, uint8_t *hold,
                      uint8_t *lane_held);

/* scope = cluster (lease.c): lane's max on this host, n of its slots held
 * on the coordinator (0: none, CAP_LANE_NONE); whether the exclusive lane
 * may run here (seg_lanes.gate).  Both admit the queue. */
void cap_lane_set_max(struct segment *seg, struct seg_cap *cap, unsigned lane, uint32_t n);
void cap_lanes_set_gate(struct segment *seg, struct seg_cap *cap, enum cap_gate gate);
/* A stopped waiter's lane grant taken back (cap_revoke.c) by a thread not in
 * line: the host's leader, while an exclusive lane waits or runs here (a
 * stopped exclusive grant holds every host back, and another host's
 * waiters cannot see it).  Bounded: the lock by a slice. */
void cap_lanes_revoke_stopped(struct segment *seg, struct seg_cap *cap);

#endif
