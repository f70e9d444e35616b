/*
 * slots.c - the shim's use of the cap: when a connection takes and gives
 * back a slot, what a wait that fails says, and what a thread that already
 * holds a slot does (nested).
 *
 * A connection takes an active slot when it sends a statement while idle
 * and gives it back when libpq says it is idle outside a transaction again
 * (settle_state), at PQfinish, or when the thread that took it exits.  It
 * takes a connection slot before the connect and gives it back at PQfinish.
 * The uncontended paths are inline in shim.h; this file is the rest.  It
 * reports what happened (enum slot_wait); its callers act on it.
 */
#include "slots.h"
#include "cap_lock.h"
#include "lanes.h"
#include "lease.h"
#include "log.h"
#include "pqint.h"
#include "procid.h"
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

static struct segment *capseg;      /* &g.seg for a shared cap, NULL for scope = process */
static struct seg_cap private_cap;  /* the semaphores of scope = process */

static const char *sem_names[CAP_SEMS] = { "max_active", "max_connections" };
static int orphans;                 /* connections marked CONN_ORPHAN (atomic) */

static void format_duration(char *buf, size_t size, uint64_t ms)
{
	if (ms % 60000 == 0 && ms)
		snprintf(buf, size, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0 && ms)
		snprintf(buf, size, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, size, "%llums", (unsigned long long)ms);
}

/*
 * A process that starts while the policy file is being changed (it was
 * read less than POLICY_SETTLE_MS after its last change: maybe half
 * written, maybe replaced again a moment later) runs on what it read, but
 * leaves the shared caps as the processes already on the segment set them:
 * a file that never settled must not take effect for everyone (the soak's
 * restarted clients did that: every start set the cap of the moment, 328
 * changes in 209 s, none from a settled reload).  The first settled
 * reload sets them (reload.c); a process alone on its segment sets them at
 * once.
 */
static int caps_wait;

void slots_caps_wait(int on)
{
	caps_wait = on;
}

int slots_caps_waiting(void)
{
	return caps_wait;
}

void slots_configure(void)
{
	/* A process whose policy did not load (it refuses connections, or
	 * with fail-open enforces nothing) must not publish its defaults - no
	 * cap - to the segment: that would lift the cap of every process on
	 * it.  It stays off the shared cap (and holds nothing: no cap, no
	 * slot) until a good policy loads. */
	int unusable = g.policy_error[0] || !g.policy_ok;
	if (unusable || g.pol.scope == SCOPE_PROCESS || !g.seg.hdr || g.proc_idx < 0) {
		if (!unusable && g.pol.scope != SCOPE_PROCESS && (g.pol.max_active || g.pol.max_connections))
			shim_log(LOG_WARNING, "no shared segment: the cap holds within this process only");
		if (hot.cap != &private_cap)
			cap_init_private(&private_cap);
		hot.cap = &private_cap;
		capseg = NULL;
	} else {
		hot.cap = &g.seg.hdr->cap;
		capseg = &g.seg;
		/* before its sweep below (slots_park_slow looks after the word) */
		__atomic_store_n(&hot.cap->scope, (uint32_t)g.pol.scope, __ATOMIC_SEQ_CST);
	}
	/* Only a shared cap of scope = host parks (cap.h): the others' settle
	 * need not try (one that read 0 just before parks, sees SEM_SWEPT set
	 * or the scope, and gives its slot back: slots_park_slow). */
	__atomic_store_n(&hot.no_park, !capseg || g.pol.scope == SCOPE_CLUSTER, __ATOMIC_RELAXED);
	if (capseg && caps_wait && !unusable && g.pol.scope != SCOPE_CLUSTER && seg_proc_any_live(&g.seg, g.proc_idx, (uid_t)-1))
		return;              /* the caps in force stay (above) */
	if (g.pol.scope == SCOPE_CLUSTER && capseg)
		lease_configure();   /* the lease sets SEM_ACTIVE's max (no lanes: policy.c) */
	else if (unusable)
		cap_set_max(capseg, hot.cap, SEM_ACTIVE, 0);
	else	/* with lanes the active work is always counted (cap.h, "Lanes") */
		cap_set_max(capseg, hot.cap, SEM_ACTIVE, g.pol.max_active ? g.pol.max_active
		            : g.pol.nlanes ? CAP_UNCAPPED : 0);
	cap_set_max(capseg, hot.cap, SEM_CONNECTIONS, unusable ? 0 : g.pol.max_connections);
	/* an unusable policy's lanes are none (nor is the cap its) (cap_lanes.h) */
	static const struct policy no_lanes;
	cap_lanes_configure(capseg, hot.cap, unusable ? &no_lanes : &g.pol,
	                    g.seg.hdr ? &g.seg : NULL);
	/* Only plain slots of scope = host park (cap.h): lanes in force, or
	 * scope = cluster (its leader counts demand from the count), take the
	 * parked ones back. */
	if (capseg && (g.pol.scope == SCOPE_CLUSTER
	               || (__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST)
	                   & SEM_LANES)))
		cap_sweep_parked(capseg, hot.cap);
}

/* Is the active slot c holds (or is about to take) one of the lanes'? */
static int lane_slot(struct conn *c)
{
	return c->rec->lane_held
	       || (__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_RELAXED) & SEM_LANES);
}

/* Give c's held (or claimed) active slot back on the slow path; a lane's
 * slot that lane_release gave back already (NONE) only admits the waiters
 * that queued meanwhile. */
static void release_active_slow(struct conn *c)
{
	uint8_t *hold = &c->rec->hold[SEM_ACTIVE];
	if (lane_slot(c) || __atomic_load_n(hold, __ATOMIC_ACQUIRE) == HOLD_NONE)
		cap_lane_release(capseg, hot.cap, hold, &c->rec->lane_held);
	else
		cap_release_slow(capseg, hot.cap, SEM_ACTIVE, hold);
}

int slot_try_active(struct conn *c)
{
	struct seg_sem *sem = &hot.cap->sems[SEM_ACTIVE];
	uint8_t *hold = &c->rec->hold[SEM_ACTIVE];
	if (!__atomic_load_n(&sem->max, __ATOMIC_RELAXED) || sem_try_acquire(sem, hold))
		return 1;
	if (!(__atomic_load_n(&sem->word, __ATOMIC_RELAXED) & SEM_LANES))
		return 0;
	unsigned lane = lanes_index(c);
	uint64_t waited;
	if (lane_try_acquire(hot.cap, lane, c->lane_gen, hold, &c->rec->lane_held))
		return 1;
	return cap_lane_acquire(capseg, hot.cap, c->lane, hold, &c->rec->lane_held,
	                        (uint32_t)g.proc_idx, t.tid, 0, 0, 1, &waited) == CAP_OK;
}

/*
 * Lost connections hold no slot.  libpq says a connection is lost when a
 * call of the program's found the server gone (CONNECTION_BAD: its
 * transaction status is then unknown), but the call that found it may be
 * one the shim never sees (PQconsumeInput in an event loop's poll).  So
 * the slot's release does not wait for the next wrapped call on that
 * connection: the thread's own connections are looked at whenever it would
 * wait for a slot, and every connection holding a slot for work in flight
 * or an open transaction also by its socket - a server that ended the
 * session closed it - at the tick (reload.c) and between a waiter's slices
 * (slots_check_lost): orphans, which no thread will ever call on again,
 * and those of live threads that sit in their own code.
 */
static int conn_lost(struct conn *c, int by_socket)
{
	if (real.PQstatus(c->pg) != CONNECTION_OK)
		return 1;
	if (!by_socket)
		return 0;
	struct pollfd p = { real.PQsocket(c->pg), POLLRDHUP, 0 };
	return p.fd < 0 || (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

static void orphan_done(struct conn *c)
{
	if (__atomic_fetch_and(&c->rec->flags, ~CONN_ORPHAN, __ATOMIC_ACQ_REL) & CONN_ORPHAN)
		__atomic_fetch_sub(&orphans, 1, __ATOMIC_RELAXED);
}

static void release_active_locked(struct conn *c);

/* c is lost: idle, no slot (g.lock held).  (Its results were the thread's
 * to read: there are none to come.) */
static void drop_lost_locked(struct conn *c)
{
	__atomic_store_n(&c->rec->status, CST_BAD, __ATOMIC_RELAXED);
	unsigned todo = settle_state(c, PQTRANS_UNKNOWN);
	if (todo & SETTLE_RELEASE)
		release_active_slow(c);  /* a lane's slot too */
	if (todo & SETTLE_HAND)
		release_active_locked(c);
	orphan_done(c);
}

struct holds_arg { struct conn *except; int pending_only; int found; };

/* Is this connection something the calling thread must finish before
 * anyone can get what it waits for?  A slot it took, a slot it shares, or
 * any work in flight (a transaction holding row locks others wait on).
 * With pending_only: only results still to read.  A lost one is none of
 * these: it is dropped here. */
static void holds_work(void *value, void *arg)
{
	struct conn *c = value;
	struct holds_arg *a = arg;
	if (c == a->except || (c->opener != t.tid && c->rec->holder_tid != t.tid))
		return;
	uint8_t h = __atomic_load_n(&c->rec->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE);
	uint32_t st = __atomic_load_n(&c->rec->cstate, __ATOMIC_RELAXED);
	if (st != CS_IDLE && conn_lost(c, 0)) {
		drop_lost_locked(c);
		return;
	}
	if (st == CS_ACTIVE || (!a->pending_only && (h == HOLD_HELD || h == HOLD_SHARED
	                                              || st == CS_IN_TRANSACTION)))
		a->found = 1;
}

static int thread_has(struct conn *except, int pending_only)
{
	struct holds_arg a = { except, pending_only, 0 };
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, holds_work, &a);
	pthread_mutex_unlock(&g.lock);
	return a.found;
}

static void drop_if_lost_orphan(void *value, void *arg)
{
	struct conn *c = value;
	(void)arg;
	if ((__atomic_load_n(&c->rec->flags, __ATOMIC_RELAXED) & CONN_ORPHAN) && conn_lost(c, 1))
		drop_lost_locked(c);
}

/* Any connection holding an active slot for work the server no longer
 * has: its session ended (terminated, a failover, the network) while the
 * thread that uses it sits in its own code and will not call for minutes.
 * Read in place (pqint_peer_gone), never a call on another thread's
 * connection; the hold's CAS decides a race with that thread's own
 * release. */
static void drop_if_lost_holder(void *value, void *arg)
{
	struct conn *c = value;
	(void)arg;
	if (__atomic_load_n(&c->rec->flags, __ATOMIC_RELAXED) & CONN_ORPHAN) {
		drop_if_lost_orphan(c, NULL);
		return;
	}
	uint32_t st = __atomic_load_n(&c->rec->cstate, __ATOMIC_RELAXED);
	if (__atomic_load_n(&c->rec->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE) == HOLD_HELD
	    && (st == CS_ACTIVE || st == CS_IN_TRANSACTION) && pqint_peer_gone(c->pg) == 1)
		drop_lost_locked(c);
}

static void (*slice_look)(void);

void slots_on_slice(void (*look)(void))
{
	__atomic_store_n(&slice_look, look, __ATOMIC_RELEASE);
}

/* Between a waiter's slices: its lost connections, and the tick. */
static void between_slices(void)
{
	slots_check_lost();
	void (*look)(void) = __atomic_load_n(&slice_look, __ATOMIC_ACQUIRE);
	if (look)
		look();
}

void slots_check_lost(void)
{
	if (!hot.cap || (!__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED)
	                 && !__atomic_load_n(&orphans, __ATOMIC_RELAXED)))
		return;              /* no slot held, no orphan to look at */
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, drop_if_lost_holder, NULL);
	pthread_mutex_unlock(&g.lock);
}

/*
 * A connection closed inside a transaction (PQfinish while idle in it):
 * libpq sends Terminate and closes, and the server then aborts the
 * transaction and ends the session - a few ms later, while a slot given
 * back at PQfinish already runs someone else's work (the soak saw 7
 * samples above the cap in force, each 2-25 ms after such a close).  So
 * the slot stays the connection's until the server has ended the session
 * (its end of the socket closes, seen on a duplicate of the socket kept
 * across libpq's close), for at most a second (or wait_timeout): then
 * it goes back anyway.  A connection closed with a statement in flight gives its slot
 * back at once: the server may run that statement for long, and a
 * program closing many must not wait for each.
 */
#define CLOSE_WAIT_MS 1000            /* or wait_timeout, if shorter */
static TLS struct conn *closing;     /* the copy that keeps the record and holds */
static TLS int closing_fd = -1;

int slots_close_later(struct conn *c)
{
	if (!hot.cap || c->idx < 0 || closing
	    || __atomic_load_n(&c->rec->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE) != HOLD_HELD
	    || __atomic_load_n(&c->rec->cstate, __ATOMIC_RELAXED) != CS_IN_TRANSACTION
	    || pqint_peer_gone(c->pg) != 0)
		return 0;
	int fd = fcntl(real.PQsocket(c->pg), F_DUPFD_CLOEXEC, 0);
	struct conn *copy = fd >= 0 ? malloc(sizeof *copy) : NULL;
	if (!copy) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	*copy = *c;              /* its record and holds (c->rec is in the segment) */
	copy->pg = NULL;
	copy->prepared = NULL;
	copy->deferred = NULL;
	closing = copy;
	closing_fd = fd;
	return 1;
}

void slots_closed(void)
{
	struct conn *c = closing;
	if (likely(!c))
		return;
	int saved = errno;
	closing = NULL;
	uint64_t ms = g.pol.wait_timeout_ms && g.pol.wait_timeout_ms < CLOSE_WAIT_MS
	              ? g.pol.wait_timeout_ms : CLOSE_WAIT_MS;
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + ms * 1000000ull;
	for (;;) {
		char buf[4096];     /* what the server still sends: not ours to read, drained */
		ssize_t n = recv(closing_fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			break;          /* the server ended the session */
		if (n > 0)
			continue;
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		if (now >= deadline)
			break;
		struct pollfd p = { closing_fd, POLLIN | POLLRDHUP, 0 };
		poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
	}
	close(closing_fd);
	closing_fd = -1;
	pthread_mutex_lock(&g.lock);
	slots_release_all(c);
	record_release(c, 0);
	pthread_mutex_unlock(&g.lock);
	free(c);
	errno = saved;
}

void slots_adopt_orphan(struct conn *c)
{
	c->rec->holder_tid = t.tid;   /* the slot is this thread's now */
	orphan_done(c);
}

int slot_thread_pending(struct conn *except)
{
	return thread_has(except, 1);
}

/* Would the calling thread wait on itself?  Only then may it not wait: it
 * has work in flight on another connection that only it can finish (an
 * event loop driving several connections, or MAAS's nested connection). */
static int thread_busy(struct conn *except)
{
	return thread_has(except, 0);
}

int slot_excl_held_back(struct conn *except)
{
	return (__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_SEQ_CST) & SEM_EXCL)
	       && thread_busy(except);
}

/* The lane c's active slot is taken in, while the policy has lanes: its
 * name, its cap (else the global one) and its wait_timeout. */
struct lane_wait { unsigned lane; const char *name; uint32_t max; uint64_t timeout_ms; };

static int lane_of(struct conn *c, struct lane_wait *lw)
{
	lw->lane = 0;
	lw->name = NULL;
	lw->max = g.pol.scope == SCOPE_CLUSTER ? g.pol.max_active   /* not this host's lease */
	          : __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED);
	lw->timeout_ms = g.pol.wait_timeout_ms;
	if (!c || !(__atomic_load_n(&hot.cap->sems[SEM_ACTIVE].word, __ATOMIC_RELAXED) & SEM_LANES))
		return 0;
	lw->lane = lanes_index(c);
	struct seg_lane *l = &hot.cap->lanes.lane[lw->lane];
	lw->name = l->name;
	uint32_t max = l->max;       /* the policy's, not a cluster host's share of it */
	for (int i = 0; lw->lane && i < g.pol.nlanes; i++)
		if (strcmp(g.pol.lanes[i].name, l->name) == 0) {
			lw->timeout_ms = g.pol.lanes[i].wait_timeout_ms;
			max = g.pol.lanes[i].max_active;
		}
	if (max && max != CAP_LANE_NONE)
		lw->max = max;
	return 1;
}

uint64_t slots_wait_timeout_ms(struct conn *c)
{
	struct lane_wait lw;
	lane_of(c, &lw);
	return lw.timeout_ms;
}

static void timeout_message(char *buf, size_t size, int sem, uint64_t waited_ns,
                            const struct lane_wait *lw)
{
	char timeout[32];
	uint32_t max = lw ? lw->max : __atomic_load_n(&hot.cap->sems[sem].max, __ATOMIC_RELAXED);
	const char *policy = g.policy_path[0] ? g.policy_path : "none";
	if (max == CAP_UNCAPPED)
		max = 0;
	char why[96] = "";      /* the lock never came: who holds it (cap_lock.h) */
	if (cap_lock_blocker(why + 2, sizeof why - 2))
		memcpy(why, ": ", 2);
	format_duration(timeout, sizeof timeout, lw ? lw->timeout_ms : g.pol.wait_timeout_ms);
	if (lw && lw->name) {
		snprintf(buf, size, "pqshim: no slot free in lane \"%s\" after waiting %.2f s%s "
		         "(max_active = %u, wait_timeout = %s, policy %s)", lw->name,
		         waited_ns / 1e9, why, max, timeout, policy);
		return;
	}
	snprintf(buf, size, "pqshim: %sno slot free after waiting %.2f s%s (%s = %u, "
	         "wait_timeout = %s, policy %s)", sem == SEM_CONNECTIONS ? "connection refused: " : "",
	         waited_ns / 1e9, why, sem_names[sem], max, timeout, policy);
}

void slots_timed_out(struct conn *c, char *buf, size_t size, uint64_t waited_ns)
{
	struct lane_wait lw;
	if (lane_of(c, &lw)) {
		struct seg_lane *l = &hot.cap->lanes.lane[lw.lane];
		seg_add(&l->timeouts, 1);
	}
	seg_add(&hot.cap->sems[SEM_ACTIVE].timeouts, 1);
	timeout_message(buf, size, SEM_ACTIVE, waited_ns, &lw);
}

/* Between the slices of a lane's wait: what the global wait below looks at
 * (lost holders and the tick; the coordinator lost, fail-closed: give up now). */
static int lane_look(void)
{
	char why[LEASE_ERROR_MAX + 256];
	between_slices();
	return lease_refused(why, sizeof why) != NULL;
}

/* Wait for a slot of sem on behalf of c, at most timeout_ns (0: the whole
 * wait_timeout, its lane's for a lane's slot); the message for the program
 * in buf when refused. */
static enum slot_wait wait_for(struct conn *c, int sem, char *buf, size_t size, int may_defer,
                               uint64_t timeout_ns)
{
	uint8_t scratch = HOLD_NONE, *hold = c ? &c->rec->hold[sem] : &scratch;
	uint64_t waited = 0;
	struct lane_wait lw;
	if (sem == SEM_ACTIVE && lease_check(buf, size))
		return WAIT_REFUSED;     /* scope = cluster, the coordinator unreachable */
	cap_lock_blocker_clear();
	uint32_t max = __atomic_load_n(&hot.cap->sems[sem].max, __ATOMIC_RELAXED);
	enum cap_result r;
	if (sem == SEM_ACTIVE && c
	    && (__atomic_load_n(&hot.cap->sems[sem].word, __ATOMIC_RELAXED) & SEM_LANES)) {
		/* a lane's slot: at once if there is room (no look at the thread's
		 * other connections on the way; without the lock if nobody waits),
		 * else in line (cap_lanes.h) */
		unsigned lane = lanes_index(c);
		if (lane_try_acquire(hot.cap, lane, c->lane_gen, hold, &c->rec->lane_held))
			return WAIT_GRANTED;
		r = cap_lane_acquire(capseg, hot.cap, c->lane, hold, &c->rec->lane_held,
		                     (uint32_t)g.proc_idx, t.tid, 0, 0, 1, &waited);
		if (r == CAP_OK)
			return WAIT_GRANTED;     /* every transaction comes here: nothing more */
		lane_of(c, &lw);
		/* in line, by the lane's wait_timeout (or what is left of it):
		 * our connections whose server has gone are looked at between
		 * slices, as below */
		r = cap_lane_acquire_look(capseg, hot.cap, c->lane, hold, &c->rec->lane_held,
		                          (uint32_t)g.proc_idx, t.tid,
		                          timeout_ns ? timeout_ns : lw.timeout_ms * 1000000ull,
		                          thread_busy(c), 0, &waited, lane_look);
		max = lw.max;
		if (r == CAP_TIMEOUT && lease_refused(buf, size))
			return WAIT_REFUSED;     /* the coordinator lost (fail-closed), as below */
	} else {
		lw.name = NULL;
		lw.max = max;
		lw.timeout_ms = g.pol.wait_timeout_ms;
		struct cap_wait w;
		r = cap_wait_begin(&w, capseg, hot.cap, sem, hold, (uint32_t)g.proc_idx, t.tid,
		                   timeout_ns ? timeout_ns : lw.timeout_ms * 1000000ull,
		                   thread_busy(c));
		while (r == CAP_WAITING) {
			/* What we wait for may be held by one of our connections
			 * whose server has gone (an orphan's, another thread's):
			 * look between slices (and tick). */
			between_slices();
			if (sem == SEM_ACTIVE && lease_refused(buf, size)) {
				/* the coordinator lost (fail-closed): give up now,
				 * unless the slot came at this very moment */
				w.deadline = cap_now_ns();
				if (cap_wait_on(&w) == CAP_OK)
					return WAIT_GRANTED;
				return WAIT_REFUSED;
			}
			r = cap_wait_on(&w);
		}
		waited = w.waited_ns;
	}
	if (max == CAP_UNCAPPED)
		max = 0;
	const char *policy = g.policy_path[0] ? g.policy_path : "none";
	switch (r) {
	case CAP_OK:
		return WAIT_GRANTED;
	case CAP_NESTED:
		if (may_defer && g.pol.nested == NESTED_SHARE && slot_thread_pending(c)) {
			/* An event loop's send: it waits its turn without blocking
			 * the loop (defer.c). */
			return WAIT_DEFER;
		}
		if (g.pol.nested == NESTED_SHARE) {
			/* It would wait on itself: ride on the slot it holds.
			 * (Only active shares can take a slot over: counted.) */
			if (sem == SEM_ACTIVE) {
				__atomic_fetch_add(&hot.shares, 1, __ATOMIC_RELAXED);
				/* no connection is fast while one shares: this
				 * thread's next settle of the slot it rides on then
				 * takes the whole path, which hands the slot on
				 * (settle_release); the fast settle need not look */
				map_epoch_bump();
			}
			__atomic_store_n(hold, HOLD_SHARED, __ATOMIC_RELEASE);
			return WAIT_GRANTED;
		}
		seg_add(&hot.cap->sems[sem].refused, 1);
		snprintf(buf, size, "pqshim: %sthread %d already holds a slot and would wait on itself "
		         "(%s = %u, nested = fail, policy %s)", sem == SEM_CONNECTIONS ?
		         "connection refused: " : "", (int)t.tid, sem_names[sem], max, policy);
		break;
	case CAP_TIMEOUT:
		timeout_message(buf, size, sem, waited, &lw);
		break;
	default:
		snprintf(buf, size, "pqshim: %sthe cap cannot be enforced: its wait queue is full "
		         "(%s = %u, policy %s)", sem == SEM_CONNECTIONS ? "connection refused: " : "",
		         sem_names[sem], max, policy);
		break;
	}
	return WAIT_REFUSED;
}

enum slot_wait slot_wait_active(struct conn *c, int may_defer, char *buf, size_t size)
{
	return wait_for(c, SEM_ACTIVE, buf, size, may_defer, 0);
}

enum slot_wait slot_wait_active_for(struct conn *c, uint64_t timeout_ns, char *buf, size_t size)
{
	return wait_for(c, SEM_ACTIVE, buf, size, 0, timeout_ns ? timeout_ns : 1);
}

enum slot_wait slot_connect(struct conn *c, char *buf, size_t size)
{
	struct seg_sem *s = &hot.cap->sems[SEM_CONNECTIONS];
	int capped = __atomic_load_n(&s->max, __ATOMIC_RELAXED) != 0;
	if ((!c || (c->idx < 0 && capseg)) && (capped || (g.pol.on_error == ONERROR_FAIL_CLOSED
	    && __atomic_load_n(&hot.cap->sems[SEM_ACTIVE].max, __ATOMIC_RELAXED)))) {
		/* A shared cap counts holders in the segment: one we cannot
		 * record there would be invisible to it. */
		char why[SEG_ERROR_MAX];
		seg_full_message(&g.seg, 0, why, sizeof why);
		snprintf(buf, size, "pqshim: connection refused: %s", why);
		return WAIT_REFUSED;
	}
	if (!capped)
		return WAIT_GRANTED;
	if (sem_try_acquire(s, &c->rec->hold[SEM_CONNECTIONS]))
		return WAIT_GRANTED;
	return wait_for(c, SEM_CONNECTIONS, buf, size, 0, 0);
}

/* Is this one of the holder's connections riding on its slot? */
struct sharer_arg { struct conn *owner, *found; };
static void find_sharer(void *value, void *arg)
{
	struct conn *c = value;
	struct sharer_arg *a = arg;
	if (!a->found && c != a->owner && c->rec->holder_tid == a->owner->rec->holder_tid
	    && __atomic_load_n(&c->rec->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE) == HOLD_SHARED)
		a->found = c;
}

/* c no longer needs the active slot it holds.  A connection of the same
 * thread riding on it (nested = share) takes it over, so that the cap
 * goes on counting that connection's work; else it goes back. */
static void release_active_locked(struct conn *c)
{
	uint8_t *hold = &c->rec->hold[SEM_ACTIVE];
	if (__atomic_load_n(&hot.shares, __ATOMIC_RELAXED)) {
		struct sharer_arg a = { c, NULL };
		connmap_each(&g.map, find_sharer, &a);
		if (a.found && cap_hand_over(capseg, hot.cap, hold, &a.found->rec->hold[SEM_ACTIVE])) {
			/* the slot stays counted in the lane it was taken in */
			__atomic_store_n(&a.found->rec->lane_held,
			                 __atomic_load_n(&c->rec->lane_held, __ATOMIC_ACQUIRE),
			                 __ATOMIC_RELEASE);
			__atomic_store_n(&c->rec->lane_held, 0, __ATOMIC_RELEASE);
			__atomic_fetch_sub(&hot.shares, 1, __ATOMIC_RELAXED);
			return;
		}
	}
	if (cap_release_active(hot.cap, hold, &c->rec->lane_held) == SEM_RELEASE_SLOW)
		release_active_slow(c);
}

void slots_settle(struct conn *c, unsigned todo)
{
	if (todo & SETTLE_PARK)
		slots_park_slow(c);
	if (todo & SETTLE_RELEASE)
		release_active_slow(c);
	if (todo & SETTLE_HAND) {
		pthread_mutex_lock(&g.lock);
		release_active_locked(c);
		pthread_mutex_unlock(&g.lock);
	}
}

void slots_park_slow(struct conn *c)
{
	uint8_t *hold = &c->rec->hold[SEM_ACTIVE];
	if (!cap_park_slow(capseg, hot.cap, hold)
	    && cap_release_active(hot.cap, hold, &c->rec->lane_held) == SEM_RELEASE_SLOW)
		release_active_slow(c);      /* (the lanes' way if they are in force) */
}

int slots_unpark(struct conn *c)
{
	uint8_t *hold = &c->rec->hold[SEM_ACTIVE];
	uint8_t h = __atomic_load_n(hold, __ATOMIC_ACQUIRE);
	if (h != HOLD_PARKED && h != HOLD_SWEEPING)
		return 0;
	c->rec->holder_tid = t.tid;   /* before the slot: see work_fast */
	if (h == HOLD_PARKED && hold_unpark(hold))
		return 1;
	/* swept, or being swept: done under the lock (NONE after) */
	return !cap_unpark_release(capseg, hot.cap, hold);
}

/* `user`: the caller uses c now (PQfinish, a switch closing it: libpq
 * allows no other), so nobody else takes its parked slot back but a
 * sweep: then it goes back the lock-free way; else (another thread's
 * exit) as a sweep does, under the lock (cap.h). */
static void release_one(struct conn *c, int sem, int user)
{
	uint8_t *hold = &c->rec->hold[sem];
	switch (__atomic_load_n(hold, __ATOMIC_ACQUIRE)) {
	case HOLD_PARKED:        /* the connection is idle (cap.h, "Parked slots") */
		if (sem == SEM_ACTIVE && user && hold_unpark(hold)) {
			release_one(c, sem, user);      /* HELD again: given back */
			break;
		}
		/* fall through */
	case HOLD_SWEEPING:
		if (sem == SEM_ACTIVE)
			cap_unpark_release(capseg, hot.cap, hold);
		break;
	case HOLD_HELD:
		if (sem == SEM_ACTIVE) {
			if (cap_release_active(hot.cap, hold, &c->rec->lane_held) == SEM_RELEASE_SLOW)
				release_active_slow(c);
		} else if (sem_release(&hot.cap->sems[sem], hold) == SEM_RELEASE_SLOW) {
			cap_release_slow(capseg, hot.cap, sem, hold);
		}
		break;
	case HOLD_NONE:
	case HOLD_RELEASING:     /* another thread is giving it back */
	case HOLD_RELEASING_COUNTED:
	case HOLD_ACQUIRING:
		break;
	case HOLD_SHARED:
		if (sem != SEM_ACTIVE)
			__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
		else if (!hold_unshare(hold))
			release_one(c, sem, user);   /* handed over to it meanwhile: HELD */
		break;
	default:
		__atomic_store_n(hold, HOLD_NONE, __ATOMIC_RELEASE);
		break;
	}
}

void slots_release_active(struct conn *c)
{
	if (hot.cap)
		release_one(c, SEM_ACTIVE, 1);
}

void slots_release_all(struct conn *c)
{
	orphan_done(c);
	if (!hot.cap)
		return;
	for (int sem = 0; sem < CAP_SEMS; sem++)
		release_one(c, sem, 1);
}

void slots_hand_over_locked(struct conn *c)
{
	if (hot.cap && __atomic_load_n(&hot.shares, __ATOMIC_RELAXED)
	    && __atomic_load_n(&c->rec->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE) == HOLD_HELD)
		release_active_locked(c);
}

static void release_if_mine(void *value, void *arg)
{
	struct conn *c = value;
	pid_t tid = *(pid_t *)arg;
	if (c->rec->holder_tid != tid)
		return;
	/* Inside a transaction (or with a statement in flight) the server
	 * still runs it: the slot is the connection's until that ends (it is
	 * used again, closed, or lost). */
	uint32_t st = __atomic_load_n(&c->rec->cstate, __ATOMIC_RELAXED);
	if (__atomic_load_n(&c->rec->hold[SEM_ACTIVE], __ATOMIC_ACQUIRE) == HOLD_HELD
	    && (st == CS_IN_TRANSACTION || st == CS_ACTIVE) && !conn_lost(c, 0)) {
		if (!(__atomic_fetch_or(&c->rec->flags, CONN_ORPHAN, __ATOMIC_ACQ_REL) & CONN_ORPHAN))
			__atomic_fetch_add(&orphans, 1, __ATOMIC_RELAXED);
		return;
	}
	release_one(c, SEM_ACTIVE, 0);
}

/* A thread exits: the active slots it took come back, except those of
 * transactions it leaves open on connections that stay (orphans). */
void slots_thread_exit(pid_t tid)
{
	if (!hot.cap)
		return;
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, release_if_mine, &tid);
	pthread_mutex_unlock(&g.lock);
}

void slots_after_fork(void)
{
	if (hot.cap == &private_cap) {
		/* the parent's counts and waiters are not the child's */
		cap_init_private(&private_cap);
		private_cap.sems[SEM_ACTIVE].max = g.pol.max_active ? g.pol.max_active
		                                   : g.pol.nlanes ? CAP_UNCAPPED : 0;
		private_cap.sems[SEM_CONNECTIONS].max = g.pol.max_connections;
		cap_lanes_configure(NULL, &private_cap, &g.pol, NULL);
	}
	hot.shares = 0;          /* the child's records start with no holds */
	orphans = 0;             /* ... and no orphans (adopt clears the flags) */
}

/* A thread still queued for a slot as we exit leaves an entry of a
 * process that no longer has a record: count again without it. */
void slots_at_exit(void)
{
	if (capseg)
		cap_audit(capseg);
}
