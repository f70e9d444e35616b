/*
 * cap_lanes_table.c - the lanes' table (cap_lanes.h): the lanes' part of
 * the audit (every lane counted again from the live holders), putting a
 * policy's lanes in force (statistics, holders and waiters carried over by
 * name) and, for scope = cluster, what the leader lets the host admit.
 * Everything here runs under the cap's lock; the queue itself is
 * cap_lanes.c's.
 */
#include "cap_int.h"
#include "cap_lanes.h"
#include "policy.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- the audit's part, and a new table ------------------------------------ */

void lanes_freeze_locked(struct seg_cap *cap)
{
	for (int i = 0; i < CAP_LANES; i++)
		__atomic_fetch_or(&cap->lanes.lane[i].word, LW_FROZEN, __ATOMIC_SEQ_CST);
}

/* Is this hold counted (by the audit that just ran hold_counts on every
 * live record, or outside an audit)?  ACQUIRING is not: an acquire the
 * audit judged is NONE by now, and a newer one fails on the frozen words. */
static int hold_is_counted(uint8_t h)
{
	return h == HOLD_HELD || h == HOLD_RELEASING || h == HOLD_RELEASING_COUNTED;
}

/* Count each lane's holders again from the live connection records (pid:
 * only that process's, for a private cap; 0: all live ones), mapping the
 * lane a slot was taken in through `names` (the table it was taken under;
 * NULL: the table in force) to the table in force, and write the lane
 * words: those counts, LW_SLOW as `slow` says, thawed in the next epoch. */
static void lanes_recount_locked(struct segment *seg, struct seg_cap *cap,
                                 char (*names)[CAP_LANE_NAME], pid_t pid, signed char *live,
                                 const uint64_t *old_words, int slow_all)
{
	struct seg_lanes *L = &cap->lanes;
	uint32_t count[CAP_LANES] = { 0 };
	L->excl_active = 0;
	for (int i = 0; i < CAP_LANE_WAITERS; i++)
		if (lane_waiter_state(&L->waiters[i]) == WAITER_GRANTED) {
			count[L->waiters[i].lane]++;
			L->excl_active += L->waiters[i].exclusive;
		}
	for (uint32_t i = 0; seg && seg->conns && i < seg->max_conns; i++) {
		struct seg_conn *c = &seg->conns[i];
		uint32_t st = __atomic_load_n(&c->state, __ATOMIC_ACQUIRE);
		uint8_t held = __atomic_load_n(&c->lane_held, __ATOMIC_SEQ_CST);
		if ((st != SLOT_LIVE && st != SLOT_CLAIMED) || !held)
			continue;
		if (pid ? c->pid != pid : !proc_is_live(seg, c->proc, c->pid, live))
			continue;
		uint8_t h = __atomic_load_n(&c->hold[SEM_ACTIVE], __ATOMIC_SEQ_CST);
		if (!hold_is_counted(h)) {
			if (h != HOLD_ACQUIRING)     /* an acquirer in flight resets its own */
				__atomic_store_n(&c->lane_held, 0, __ATOMIC_RELAXED);
			continue;
		}
		unsigned old = (held & ~LANE_HELD_EXCL) - 1, now = old < CAP_LANES ? old : 0;
		if (names)
			now = old < CAP_LANES ? cap_lane_find(cap, names[old]) : 0;
		int excl = (held & LANE_HELD_EXCL) != 0;
		__atomic_store_n(&c->lane_held, (uint8_t)((now + 1) | (excl ? LANE_HELD_EXCL : 0)),
		                 __ATOMIC_SEQ_CST);
		count[now]++;
		L->excl_active += (uint32_t)excl;
	}
	for (int i = 0; i < CAP_LANES; i++) {
		uint64_t was = old_words ? old_words[i] : __atomic_load_n(&L->lane[i].word,
		                                                          __ATOMIC_SEQ_CST);
		uint64_t slow = slow_all || L->lane[i].exclusive || L->lane[i].max == CAP_LANE_NONE
		                ? LW_SLOW : 0;
		__atomic_store_n(&L->lane[i].word,
		                 count[i] | slow | ((lw_epoch(was) + 1) << LW_EPOCH_SHIFT),
		                 __ATOMIC_SEQ_CST);
	}
}

uint32_t lanes_audit_locked(struct segment *seg, struct seg_cap *cap, signed char *live,
                            uint32_t *waiting)
{
	struct seg_lanes *L = &cap->lanes;
	uint32_t granted = 0, queued = 0;
	for (int i = 0; i < CAP_LANE_WAITERS; i++) {
		struct seg_lane_waiter *w = &L->waiters[i];
		uint32_t st = lane_waiter_state(w);
		if (st == WAITER_FREE)
			continue;
		if (st == WAITER_CANCELLED || st == WAITER_ABANDONED
		    || !proc_is_live(seg, w->proc, w->pid, live)) {
			if (st == WAITER_QUEUED || st == WAITER_CANCELLED) {
				/* out of line; the global word's waiting is recounted */
				lane_dequeue_counts(L, w);
			}
			__atomic_store_n(&w->state, WAITER_FREE, __ATOMIC_RELEASE);
		} else if (st == WAITER_GRANTED) {
			granted++;
		} else {
			queued++;
		}
	}
	*waiting += queued;
	lanes_recount_locked(seg, cap, NULL, 0, live, NULL, 0);
	return granted;
}

/* A new table in a shared cap: the records' lanes follow their names (by
 * CAS: a fast path may be in flight on them; the lane words are frozen, so
 * none lands), then an audit counts everything again. */
static void lanes_remap_locked(struct segment *seg, char (*names)[CAP_LANE_NAME])
{
	struct seg_cap *cap = &seg->hdr->cap;
	for (uint32_t i = 0; seg->conns && i < seg->max_conns; i++) {
		struct seg_conn *c = &seg->conns[i];
		uint8_t held = __atomic_load_n(&c->lane_held, __ATOMIC_SEQ_CST);
		unsigned old = (held & ~LANE_HELD_EXCL) - 1;
		if (!held || old >= CAP_LANES)
			continue;
		unsigned now = cap_lane_find(cap, names[old]);
		uint8_t to = (uint8_t)((now + 1) | (held & LANE_HELD_EXCL));
		__atomic_compare_exchange_n(&c->lane_held, &held, to, 0, __ATOMIC_SEQ_CST,
		                            __ATOMIC_RELAXED);
	}
}

/* A lane's settings and statistics cleared, its word (and epoch) kept. */
static void lane_clear(struct seg_lane *l)
{
	memset(l->name, 0, sizeof l->name);
	l->max = 0;
	l->priority = 0;
	l->exclusive = 0;
	l->waiting = 0;
	l->acquired = l->waits = l->timeouts = l->wait_ns_sum = 0;
	memset(l->hist, 0, sizeof l->hist);
}

static int policy_has_exclusive(const struct policy *p)
{
	for (int i = 0; i < p->nlanes; i++)
		if (p->lanes[i].exclusive)
			return 1;
	return 0;
}

/* The policy's settings of each lane; exclusive lanes, and every lane of
 * a private cap, only under the lock (LW_SLOW). */
static void lanes_settings_locked(struct seg_cap *cap, const struct policy *p, int n, int shared)
{
	struct seg_lanes *L = &cap->lanes;
	int cluster = shared && p->scope == SCOPE_CLUSTER;
	int was_cluster = L->gate != CAP_GATE_OFF;   /* then the lanes' maxes are the leader's */
	L->lane[0].priority = 0;
	for (int i = 0; i < n; i++) {
		struct seg_lane *l = &L->lane[i + 1];
		uint32_t max = p->lanes[i].max_active;
		/* scope = cluster: a capped lane's max on this host is the lane's
		 * slots its leader holds (lease.c), none until it holds some */
		if (cluster && max && !p->lanes[i].exclusive)
			max = was_cluster && l->max && l->max != CAP_LANE_NONE && l->max <= max
			      ? l->max : CAP_LANE_NONE;
		__atomic_store_n(&l->max, max, __ATOMIC_RELAXED);
		l->priority = p->lanes[i].priority;
		l->exclusive = p->lanes[i].exclusive ? 1 : 0;
	}
	if (!cluster)
		L->gate = CAP_GATE_OFF;
	else if (policy_has_exclusive(p) && (L->gate == CAP_GATE_OFF || L->gate == CAP_GATE_LOCAL))
		L->gate = CAP_GATE_SHUT;          /* until the leader holds the gate */
	else if (!policy_has_exclusive(p))
		L->gate = CAP_GATE_LOCAL;
	for (int i = 0; i < CAP_LANES; i++) {
		if (!shared || L->lane[i].exclusive || L->lane[i].max == CAP_LANE_NONE)
			__atomic_fetch_or(&L->lane[i].word, LW_SLOW, __ATOMIC_SEQ_CST);
		else
			__atomic_fetch_and(&L->lane[i].word, ~LW_SLOW, __ATOMIC_SEQ_CST);
	}
	for (int i = 0; i < CAP_LANE_WAITERS; i++)
		if (L->waiters[i].state == WAITER_QUEUED)
			L->waiters[i].priority = L->lane[L->waiters[i].lane].priority;
}

void cap_lanes_configure(struct segment *seg, struct seg_cap *cap, const struct policy *p,
                         struct segment *records)
{
	static signed char live[SEG_PROCS_LIMIT];   /* under the lock */
	struct seg_lanes *L = &cap->lanes;
	struct seg_sem *s = &cap->sems[SEM_ACTIVE];
	int n = p->nlanes < CAP_LANES - 1 ? p->nlanes : CAP_LANES - 1;
	int shared = seg && seg->hdr && cap == &seg->hdr->cap;
	if (cap_lock(seg, cap, 0) != 0)
		return;
	int same = (uint32_t)n == L->nlanes && strcmp(L->lane[0].name, "default") == 0;
	for (int i = 0; same && i < n; i++)
		same = strcmp(L->lane[i + 1].name, p->lanes[i].name) == 0;
	if (same) {
		lanes_settings_locked(cap, p, n, shared);
	} else {
		/* A new table: statistics and holders go by name.  The lane
		 * words are frozen first (no fast path lands on them), keep their
		 * epochs (a CAS read before must fail) and are counted again. */
		static struct seg_lane old[CAP_LANES];   /* under the lock */
		static char names[CAP_LANES][CAP_LANE_NAME];
		uint64_t words[CAP_LANES];
		lanes_freeze_locked(cap);
		/* before any word thaws: see lane_try_acquire */
		__atomic_fetch_add(&L->gen, 1, __ATOMIC_SEQ_CST);
		memcpy(old, L->lane, sizeof old);
		for (int i = 0; i < CAP_LANES; i++) {
			memcpy(names[i], old[i].name, CAP_LANE_NAME);
			words[i] = __atomic_load_n(&L->lane[i].word, __ATOMIC_SEQ_CST);
			lane_clear(&L->lane[i]);
		}
		snprintf(names[0], CAP_LANE_NAME, "%s", "");   /* lane 0 is the default by place */
		snprintf(L->lane[0].name, CAP_LANE_NAME, "default");
		for (int i = 0; i < n; i++)
			snprintf(L->lane[i + 1].name, CAP_LANE_NAME, "%s", p->lanes[i].name);
		L->nlanes = (uint32_t)n;
		for (int i = 0; i < CAP_LANES; i++) {
			unsigned to = i == 0 ? 0 : cap_lane_find(cap, old[i].name);
			if (i > 0 && (!old[i].name[0] || !to))
				continue;
			struct seg_lane *l = &L->lane[to];
			l->acquired = old[i].acquired;
			l->waits = old[i].waits;
			l->timeouts = old[i].timeouts;
			l->wait_ns_sum = old[i].wait_ns_sum;
			memcpy(l->hist, old[i].hist, sizeof l->hist);
		}
		/* queued waiters: into the lane of the same name, else the default */
		for (int i = 0; i < CAP_LANE_WAITERS; i++) {
			struct seg_lane_waiter *w = &L->waiters[i];
			uint32_t st = lane_waiter_state(w);
			if (st == WAITER_FREE)
				continue;
			w->lane = w->lane < CAP_LANES ? cap_lane_find(cap, old[w->lane].name) : 0;
			if (st == WAITER_QUEUED || st == WAITER_CANCELLED)
				L->lane[w->lane].waiting++;
		}
		lanes_settings_locked(cap, p, n, shared);   /* before any word thaws */
		if (shared) {
			lanes_remap_locked(seg, names);
			audit_locked(seg, cap);       /* counts the lanes, thaws the words */
		} else {
			memset(live, 0, sizeof live);
			lanes_recount_locked(records, cap, names, getpid(), live, words, 1);
		}
	}
	if (n) {
		__atomic_fetch_or(&s->word, SEM_LANES, __ATOMIC_SEQ_CST);
	} else {
		__atomic_fetch_and(&s->word, ~SEM_LANES, __ATOMIC_SEQ_CST);
		/* lane waiters left (a reload removed every lane): serve them all */
		for (int i = 0; i < CAP_LANE_WAITERS; i++)
			L->waiters[i].exclusive = 0;
		L->excl_waiting = 0;
		L->excl_active = 0;
	}
	lanes_admit_locked(cap);         /* and SEM_EXCL as excl_* say */
	cap_unlock(cap);
}

/* ---- scope = cluster: what the leader lets this host admit (lease.c) -------- */

void cap_lane_set_max(struct segment *seg, struct seg_cap *cap, unsigned lane, uint32_t n)
{
	struct seg_lane *l = &cap->lanes.lane[lane];
	uint32_t max = n ? n : CAP_LANE_NONE;
	if (lane >= CAP_LANES || __atomic_load_n(&l->max, __ATOMIC_RELAXED) == max
	    || cap_lock(seg, cap, 0) != 0)
		return;
	/* None: LW_SLOW first (a fast path's CAS on the word read before fails),
	 * then the max; some: the max first, then LW_SLOW off (a fast path that
	 * reads the word without it reads the new max after it). */
	if (max == CAP_LANE_NONE)
		__atomic_fetch_or(&l->word, LW_SLOW, __ATOMIC_SEQ_CST);
	__atomic_store_n(&l->max, max, __ATOMIC_SEQ_CST);
	if (max != CAP_LANE_NONE && !l->exclusive)
		__atomic_fetch_and(&l->word, ~LW_SLOW, __ATOMIC_SEQ_CST);
	lanes_admit_locked(cap);
	cap_unlock(cap);
}

void cap_lanes_set_gate(struct segment *seg, struct seg_cap *cap, enum cap_gate gate)
{
	if (__atomic_load_n(&cap->lanes.gate, __ATOMIC_RELAXED) == (uint32_t)gate
	    || cap_lock(seg, cap, 0) != 0)
		return;
	__atomic_store_n(&cap->lanes.gate, (uint32_t)gate, __ATOMIC_SEQ_CST);
	lanes_admit_locked(cap);
	cap_unlock(cap);
}
