/*
 * cap_park.c - parked slots (cap.h, "Parked slots"): the sweep that takes
 * idle connections' parked slots back for whoever needs one, and the give
 * back of one when its connection closes.  Everything here runs under the
 * cap's lock; the parking itself (HELD -> PARKED, the word's one look) is
 * the fast settle's (wrap_work.c, slots.c).
 */
#include "cap_int.h"
#include "policy.h"
#include "segment.h"

/* Only the segment's own cap parks: a private one has nobody to sweep it. */
static int parks_here(const struct segment *seg, const struct seg_cap *cap)
{
	return seg && seg->hdr && cap == &seg->hdr->cap;
}

int cap_parking_allowed(const struct seg_cap *cap, uint64_t w, uint32_t max)
{
	return max && !(w & (SEM_STATE_MASK & ~SEM_COUNT_MASK)) && sem_count(w) <= max
	       && __atomic_load_n(&cap->scope, __ATOMIC_SEQ_CST) != SCOPE_CLUSTER;
}

/* A PARKED hold's slot goes back (the lock held): 1, or 0 if it was not
 * PARKED (its owner took it back first). */
static int sweep_hold_locked(struct seg_cap *cap, uint8_t *hold)
{
	uint8_t parked = HOLD_PARKED;
	if (!__atomic_compare_exchange_n(hold, &parked, HOLD_SWEEPING, 0, __ATOMIC_SEQ_CST,
	                                 __ATOMIC_RELAXED))
		return 0;
	give_back_locked(cap, SEM_ACTIVE);
	uint8_t sweeping = HOLD_SWEEPING;   /* (unless cap_unpark_release gave up on us) */
	__atomic_compare_exchange_n(hold, &sweeping, HOLD_NONE, 0, __ATOMIC_SEQ_CST,
	                            __ATOMIC_RELAXED);
	return 1;
}

void cap_sweep_parked_locked(struct segment *seg, struct seg_cap *cap, int always)
{
	if (!parks_here(seg, cap))
		return;
	/* Set the bit first, then look: a parker that saw it clear had
	 * parked before (cap.h); one that parks from now on sees it set.  A
	 * waiter's change is in the word (a parker's CAS clearing the bit
	 * fails on it): with the bit set already nobody parked since.  A
	 * change of max or scope is not: always look. */
	if ((__atomic_fetch_or(&cap->sems[SEM_ACTIVE].word, SEM_SWEPT, __ATOMIC_SEQ_CST)
	     & SEM_SWEPT) && !always)
		return;
	int swept = 0;
	for (uint32_t i = 0; i < seg->max_conns; i++) {
		struct seg_conn *c = &seg->conns[i];
		if (__atomic_load_n(&c->hold[SEM_ACTIVE], __ATOMIC_SEQ_CST) != HOLD_PARKED)
			continue;
		/* (only a live record's: a connection parks once connected, and a
		 * record being claimed may still show the hold of the freed one
		 * it was, which no count includes any more) */
		if (__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) == SLOT_LIVE)
			swept |= sweep_hold_locked(cap, &c->hold[SEM_ACTIVE]);
	}
	if (swept)
		lanes_admit_locked(cap);   /* lanes just put in force: their waiters */
}

void cap_sweep_parked(struct segment *seg, struct seg_cap *cap)
{
	if (!parks_here(seg, cap))
		return;
	if (cap_lock(seg, cap, 0) != 0) {
		/* its holder is stopped: the next one's audit sweeps (audit_locked) */
		__atomic_fetch_or(&cap->sems[SEM_ACTIVE].word, SEM_SWEPT, __ATOMIC_SEQ_CST);
		__atomic_store_n(&cap->audit_due, 1, __ATOMIC_RELEASE);
		return;
	}
	cap_sweep_parked_locked(seg, cap, 1);
	cap_unlock(cap);
}

int cap_unpark_release(struct segment *seg, struct seg_cap *cap, uint8_t *hold)
{
	/* Under the lock: a sweep in progress (SWEEPING) has ended by then, or
	 * its sweeper died and the lock's audit made the hold NONE. */
	if (cap_lock(seg, cap, 0) != 0) {
		/* its holder is stopped (maybe mid-sweep of this very hold): out
		 * of the count from the next holder's audit on */
		for (uint8_t h = __atomic_load_n(hold, __ATOMIC_SEQ_CST);
		     h == HOLD_PARKED || h == HOLD_SWEEPING;)
			if (__atomic_compare_exchange_n(hold, &h, HOLD_NONE, 0, __ATOMIC_SEQ_CST,
			                                __ATOMIC_SEQ_CST))
				__atomic_store_n(&cap->audit_due, 1, __ATOMIC_RELEASE);
		return __atomic_load_n(hold, __ATOMIC_ACQUIRE) != HOLD_HELD;
	}
	sweep_hold_locked(cap, hold);
	int done = __atomic_load_n(hold, __ATOMIC_ACQUIRE) != HOLD_HELD;
	cap_unlock(cap);
	return done;
}


int cap_park_slow(struct segment *seg, struct seg_cap *cap, uint8_t *hold)
{
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	int shared = parks_here(seg, cap);
	/* After the hold's CAS, the word, then max and scope: a change of
	 * either is stored before its sweep sets SEM_SWEPT (the top of
	 * cap.h), so if the bit is set here we see the change. */
	uint64_t w = __atomic_load_n(&s->word, __ATOMIC_SEQ_CST);
	for (;;) {
		uint32_t max = __atomic_load_n(&s->max, __ATOMIC_SEQ_CST);
		if (!shared || !cap_parking_allowed(cap, w, max))
			break;
		if (!(w & SEM_SWEPT)
		    || __atomic_compare_exchange_n(&s->word, &w, w & ~SEM_SWEPT, 0, __ATOMIC_SEQ_CST,
		                                   __ATOMIC_SEQ_CST))
			return 1;        /* it stays parked */
	}
	/* a sweep took it meanwhile (1), or it is HELD again: the caller
	 * gives it back the normal way (0) */
	return !hold_unpark(hold);
}
