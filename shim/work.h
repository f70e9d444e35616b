/*
 * work.h - the work path (work.c): what happens around every statement the
 * program sends, beyond the fast path of shim.h.  Deferral (defer.c) lives
 * inside it.
 */
#ifndef PQSHIM_WORK_H
#define PQSHIM_WORK_H

#include "pqerr.h"
#include "reload.h"
#include "shim.h"

/* What work_begin decided.  The wrapper acts on it. */
enum verdict {
	WORK_GO = 0,             /* send it (the connection is counted, its slot taken) */
	WORK_DEFER,              /* an event loop's send: save it for later (defer.c) */
	WORK_REFUSED_CAP,        /* no slot (53300); the text in work_why */
	WORK_REFUSED_THREAD,     /* cross_thread = deny (55000); the text in work_why */
	WORK_REFUSED_INHERITED,  /* a fork child's inherited connection, after_fork =
	                          * protect (55000); the text in work_why */
	WORK_CLOSED,             /* a read-only switch closed it (08006); the text in work_why */
	WORK_REFUSED_SEGMENT,    /* the segment cannot be used, on_error = fail-closed (58000);
	                          * the text in work_why (segwatch.c) */
};

/* The SQLSTATE of a refusal. */
static inline const char *verdict_sqlstate(enum verdict v)
{
	switch (v) {
	case WORK_REFUSED_THREAD:
	case WORK_REFUSED_INHERITED: return SQLSTATE_PREREQUISITE_STATE;
	case WORK_CLOSED:            return SQLSTATE_CONNECTION_FAILURE;
	case WORK_REFUSED_SEGMENT:   return SQLSTATE_SYSTEM_ERROR;
	default:                     return SQLSTATE_TOO_MANY_CONNECTIONS;
	}
}

/* The text of the calling thread's last refusal (valid until its next). */
extern TLS char work_why[768] __attribute__((visibility("hidden")));

/* The whole path: registers the thread, looks up, applies the rules
 * (cross-thread use, a read-only switch to follow, a slot to wait for),
 * counts.  *cp is the connection (NULL: not one of ours, WORK_GO). */
enum verdict work_begin(PGconn *pg, struct conn **cp, int may_defer);

/* A read-only switch happened since c last looked: follow it, inside the
 * slot c holds (WORK_GO), or WORK_CLOSED (the slot given back). */
enum verdict work_follow_switch(struct conn *c);

/* A deferred send that could not be saved waits for its slot now. */
enum verdict work_wait(struct conn *c);

/* c enters (on = 1) or leaves pipeline mode: its sends are never deferred
 * (libpq queues them itself). */
void work_pipeline(struct conn *c, int on);

/* Finish what settle_state left to do (slots.c, then defer.c). */
void work_settle_finish(struct conn *c, unsigned todo);

/* Work may have completed on c: settle its record and slot. */
ALWAYS_INLINE void track_settle(struct conn *c)
{
	unsigned todo = settle_state(c, xact_status(c->pg));
	if (unlikely(todo))
		work_settle_finish(c, todo);
}

/* A statement leaves on c (the whole path): count it, stamp it, tick if due. */
ALWAYS_INLINE void track_sent(struct conn *c)
{
	uint64_t now = clock_ticks();
	record_sent_at(c->rec, now);
	if (unlikely(now >= __atomic_load_n(&hot.next_tick, __ATOMIC_RELAXED)))
		shim_tick();
}

#endif
