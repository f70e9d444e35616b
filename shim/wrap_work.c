/*
 * wrap_work.c - every way libpq sends work, and the calls after which work
 * may be complete.
 *
 * Statements are counted where they leave (PQexec*, PQprepare, PQdescribe*,
 * PQfn, PQsend*); the connection's state is read back from libpq after the
 * calls that can finish work (the synchronous ones, PQgetResult, PQendcopy,
 * PQexitPipelineMode).  Each wrapper has the shape of shim.h: nested calls
 * (libpq calling its own exports) go straight through.  COPY data calls,
 * PQconsumeInput and PQisBusy are not wrapped: they change nothing the shim
 * keeps.  The macros take an `after` statement, run with the connection c
 * and the result r once libpq accepted the call (PQprepare and
 * PQsendPrepare note the statement there).
 */
#include "defer.h"
#include "pqerr.h"
#include "session.h"
#include "startup.h"
#include "work.h"

/* A fast send that libpq refused: no work, no slot kept.  t.sent is the
 * connection (nothing ran on this thread in between but libpq's send,
 * which calls no wrapper). */
__attribute__((noinline)) static int fast_refused(void)
{
	track_settle(t.sent);
	return 0;
}

/* A synchronous call: counts, may be refused (a FATAL_ERROR result), and
 * the work is complete when it returns.  The exported function is the
 * fast path; name##_slow the whole one.  `after` runs once the work is
 * settled, with c (ours) and r. */
#define WRAP_SYNC(name, params, args, after) \
	__attribute__((noinline)) static PGresult *name##_slow params \
	{ \
		if (t.depth) \
			return real.name args; \
		struct conn *c = work_fast_lane(conn);  /* a lane's CASes, else the whole path */ \
		if (c) { \
			if (unlikely(!work_fast_stamp(c))) \
				shim_tick(); \
		} else { \
			enum verdict v = work_begin(conn, &c, 0); \
			if (unlikely(v != WORK_GO)) \
				return pqerr_result(conn, verdict_sqlstate(v), work_why); \
		} \
		PGresult *r = OWN(real.name args); \
		if (c) { \
			track_settle(c); \
			after; \
		} \
		return r; \
	} \
	SHIM_EXPORT PGresult *name params \
	{ \
		uint64_t now; \
		struct conn *c = work_fast(conn, &now);  /* never inside a depth mark */ \
		if (unlikely(!c)) \
			return name##_slow args; \
		if (work_fast_due(now)) \
			shim_tick(); \
		PGresult *r = OWN(real.name args); \
		track_settle(c); \
		after; \
		return r; \
	}

/* An asynchronous send: counts, may be refused (0 and PQerrorMessage), or
 * deferred (an event loop's turn, defer.c: `save` keeps a copy).  A send
 * libpq refuses settles at once: no work, no slot kept.  `after` runs with
 * c (ours) once libpq accepted it.  libpq's sends call none of the
 * functions the shim wraps (checked in libpq 15's PLT calls; were one to,
 * a statement would be counted twice, no more: the slot is already held),
 * so the fast path keeps nothing live across the call: no depth mark, no
 * saved registers (unless `after` needs c), the time stamp before the
 * call (a tick due: name##_ticked, out of line, ticks then sends).  A
 * deferred send bumps the map epoch: while any waits, no connection of the
 * process is fast (work.c), so the fast paths need no look at
 * hot.deferrals. */
#define WRAP_SEND(name, params, args, save, after) \
	__attribute__((noinline)) static int name##_ticked params \
	{ \
		shim_tick(); \
		int r = real.name args; \
		if (unlikely(!r)) \
			return fast_refused(); \
		struct conn *c = t.sent; \
		(void)c; \
		after; \
		return r; \
	} \
	__attribute__((noinline)) static int name##_slow params \
	{ \
		if (t.depth) \
			return real.name args; \
		struct conn *c = work_fast_lane(conn); \
		if (c) { \
			if (unlikely(!work_fast_stamp(c))) \
				return name##_ticked args; \
			int r = real.name args; \
			if (unlikely(!r)) \
				return fast_refused(); \
			after; \
			return r; \
		} \
		if (unlikely(busy_deferred(conn))) \
			return 0; \
		enum verdict v = work_begin(conn, &c, 1); \
		if (unlikely(v == WORK_DEFER) && (save) == 0) { \
			map_epoch_bump();  /* no fast path while it waits */ \
			return 1; \
		} \
		if (unlikely(v == WORK_DEFER)) \
			v = work_wait(c); \
		if (unlikely(v != WORK_GO)) { \
			pqerr_set_message(conn, work_why); \
			return 0; \
		} \
		int r = OWN(real.name args); \
		if (unlikely(!r) && c) { \
			track_settle(c);  /* refused by libpq: no work, no slot */ \
		} else if (c) { \
			layout_verify(conn);  /* busy now: a check of the layout */ \
			after; \
		} \
		return r; \
	} \
	SHIM_EXPORT int name params \
	{ \
		uint64_t now; \
		struct conn *c = work_fast(conn, &now);  /* never inside a depth mark */ \
		if (unlikely(!c)) \
			return name##_slow args; \
		if (work_fast_due(now)) \
			return name##_ticked args; \
		int r = real.name args;  /* calls no wrapper: no depth mark needed */ \
		if (unlikely(!r)) \
			return fast_refused(); \
		c = t.sent; \
		after; \
		return r; \
	}

#define NOTHING ((void)0)

/* A send on a connection whose previous send still waits in defer.c is
 * what libpq says of any send while a command is in progress. */
#define busy_deferred(conn) \
	(unlikely(__atomic_load_n(&hot.deferrals, __ATOMIC_RELAXED)) && busy_deferred_slow(conn))

__attribute__((noinline)) static int busy_deferred_slow(PGconn *conn)
{
	shim_enter();
	struct conn *c = conn_lookup(conn);
	if (!c || !c->deferred)
		return 0;
	pqerr_set_message(conn, "another command is already in progress");
	return 1;
}

WRAP_SYNC(PQexec, (PGconn *conn, const char *query), (conn, query), NOTHING)
WRAP_SYNC(PQexecParams,
	(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
	 const char *const *paramValues, const int *paramLengths, const int *paramFormats,
	 int resultFormat),
	(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat),
	NOTHING)
/* Statements prepared by name are remembered, to prepare them again if
 * the connection moves (session.c). */
WRAP_SYNC(PQprepare,
	(PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes),
	(conn, stmtName, query, nParams, paramTypes),
	if (c->routed && real.PQresultStatus(r) == PGRES_COMMAND_OK)
		session_note_prepare(c, stmtName, query, nParams, paramTypes))
WRAP_SYNC(PQexecPrepared,
	(PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues,
	 const int *paramLengths, const int *paramFormats, int resultFormat),
	(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat), NOTHING)
WRAP_SYNC(PQdescribePrepared, (PGconn *conn, const char *stmt), (conn, stmt), NOTHING)
WRAP_SYNC(PQdescribePortal, (PGconn *conn, const char *portal), (conn, portal), NOTHING)
WRAP_SYNC(PQfn,
	(PGconn *conn, int fnid, int *result_buf, int *result_len, int result_is_int,
	 const PQArgBlock *args, int nargs),
	(conn, fnid, result_buf, result_len, result_is_int, args, nargs), NOTHING)

WRAP_SEND(PQsendQuery, (PGconn *conn, const char *query), (conn, query),
	defer_save(c, DEFER_QUERY, query, NULL, 0, NULL, NULL, NULL, NULL, 0), NOTHING)
WRAP_SEND(PQsendQueryParams,
	(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
	 const char *const *paramValues, const int *paramLengths, const int *paramFormats,
	 int resultFormat),
	(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat),
	defer_save(c, DEFER_PARAMS, command, NULL, nParams, paramTypes, paramValues, paramLengths,
	           paramFormats, resultFormat), NOTHING)
WRAP_SEND(PQsendPrepare,
	(PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes),
	(conn, stmtName, query, nParams, paramTypes),
	defer_save(c, DEFER_PREPARE, query, stmtName, nParams, paramTypes, NULL, NULL, NULL, 0),
	if (c->routed)
		session_note_prepare(c, stmtName, query, nParams, paramTypes))
WRAP_SEND(PQsendQueryPrepared,
	(PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues,
	 const int *paramLengths, const int *paramFormats, int resultFormat),
	(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat),
	defer_save(c, DEFER_PREPARED, NULL, stmtName, nParams, NULL, paramValues, paramLengths,
	           paramFormats, resultFormat), NOTHING)
WRAP_SEND(PQsendDescribePrepared, (PGconn *conn, const char *stmt), (conn, stmt),
	defer_save(c, DEFER_DESCRIBE_PREPARED, NULL, stmt, 0, NULL, NULL, NULL, NULL, 0), NOTHING)
WRAP_SEND(PQsendDescribePortal, (PGconn *conn, const char *portal), (conn, portal),
	defer_save(c, DEFER_DESCRIBE_PORTAL, NULL, portal, 0, NULL, NULL, NULL, NULL, 0), NOTHING)

/* PQgetResult while some send of this process waits in defer.c: the same,
 * plus answering for a connection whose statement has not left yet. */
__attribute__((noinline)) static PGresult *get_result_deferred(PGconn *conn)
{
	if (t.depth)
		return real.PQgetResult(conn);
	shim_enter();
	struct conn *c = conn_lookup(conn);
	if (c && c->deferred) {
		int answered;
		PGresult *r = defer_result(c, &answered);
		if (answered)
			return r;
	}
	PGresult *r = OWN(real.PQgetResult(conn));
	if (!r) {
		c = conn_lookup(conn);
		if (c)
			track_settle(c);
	}
	return r;
}

__attribute__((noinline)) static PGresult *settle_slow(PGconn *conn)
{
	if (t.depth)
		return NULL;
	shim_enter();
	struct conn *c = conn_lookup(conn);
	if (c) {
		layout_verify(conn);
		track_settle(c);
	}
	return NULL;
}

__attribute__((noinline)) static PGresult *settle_finish_null(struct conn *c, unsigned todo)
{
	work_settle_finish(c, todo);
	return NULL;
}

/* The fast settle's other cases, out of line so that the common ones save
 * no registers: settle_state, with what libpq says now. */
__attribute__((noinline)) static PGresult *settle_fast_other(struct conn *c, PGconn *conn)
{
	unsigned todo = settle_state_(c, pqint_xact_status(conn), 0);
	if (unlikely(todo))
		return settle_finish_null(c, todo);   /* a tail call: no register saved */
	return NULL;
}

/* An autocommit statement's lane slot goes back: settle_state's first
 * case (idle after a statement, as settle_after_result found it), without
 * reading libpq's state again. */
__attribute__((noinline)) static PGresult *settle_lane_release(struct conn *c)
{
	unsigned todo = settle_state_(c, PQTRANS_IDLE, 0);
	if (unlikely(todo))
		return settle_finish_null(c, todo);
	return NULL;
}

/* A plain slot's release did not land at once (a flag, waiters, a CAS
 * lost to another, an audit): sem_release's retry, then its end as
 * settle_state ends (the hold is RELEASING, claimed). */
__attribute__((noinline)) static PGresult *settle_release_retry(struct conn *c, uint64_t w0,
                                                               uint64_t w)
{
	struct seg_conn *r = c->rec;
	enum sem_release_result res = sem_release_retry(&hot.cap->sems[SEM_ACTIVE],
	                                                &r->hold[SEM_ACTIVE], w0, w);
	__atomic_store_n(&r->cstate, CS_IDLE, __ATOMIC_RELAXED);
	if (res == SEM_RELEASE_SLOW)
		return settle_finish_null(c, SETTLE_RELEASE);
	return NULL;
}

/* The claimed release's last step failed: an audit counted the hold,
 * and the slow path gives that count back (cap.h). */
__attribute__((noinline)) static PGresult *settle_release_counted(struct conn *c)
{
	__atomic_store_n(&c->rec->cstate, CS_IDLE, __ATOMIC_RELAXED);
	return settle_finish_null(c, SETTLE_RELEASE);
}

/* PQgetResult returned NULL: the work may be over (unless libpq called
 * it itself, inside a synchronous call: its wrapper settles).  One of the
 * thread's fast connections, with libpq's layout known, is settled
 * without a call and without a look at hot.deferrals or hot.shares (no
 * connection is fast while a send waits or a hold shares: work.c);
 * anything else goes the whole way.  The common end of an autocommit
 * statement (settle_state's first case: connection fine, no command in
 * progress, idle outside a transaction after a statement) takes the
 * first branch: no slot, two stores; a plain slot (no lane) is parked:
 * one CAS on the hold and one load of the word (cap.h).  Every
 * other case leaves by a tail call, so nothing here saves a register.
 * Returns NULL, for the wrapper to tail-call. */
__attribute__((noinline)) static PGresult *settle_after_result(PGconn *conn)
{
	struct conn *c;        /* never fast inside a depth mark: settle_slow looks */
	if (unlikely(!fast_find(conn, &c)))   /* fast: libpq's layout is known */
		return settle_slow(conn);
	struct seg_conn *r = c->rec;
	if (unlikely(pqint_not_idle(conn)) || unlikely(r->cstate != CS_ACTIVE))
		return settle_fast_other(c, conn);
	uint8_t *hold = &r->hold[SEM_ACTIVE];
	if (likely(*hold == HOLD_NONE)) {
		record_count(&r->xacts);
		__atomic_store_n(&r->cstate, CS_IDLE, __ATOMIC_RELAXED);
		return NULL;
	}
	if (unlikely(r->lane_held))
		return settle_lane_release(c);
	if (unlikely(__atomic_load_n(&hot.no_park, __ATOMIC_RELAXED))) {
		/* a plain slot of a cap that never parks (a private cap, scope =
		 * cluster): sem_release inline (claim, the word's CAS, confirm) */
		uint64_t w0, w;
		enum sem_release_result res = sem_release_first(&hot.cap->sems[SEM_ACTIVE], hold,
		                                                &w0, &w);
		if (unlikely(res == SEM_RELEASE_NOT_MINE))
			return settle_fast_other(c, conn);     /* shared, waiting, or not ours */
		record_count(&r->xacts);
		if (unlikely(res == SEM_RELEASE_RETRY))
			return settle_release_retry(c, w0, w);
		if (unlikely(res == SEM_RELEASE_SLOW))
			return settle_release_counted(c);
		__atomic_store_n(&r->cstate, CS_IDLE, __ATOMIC_RELAXED);
		return NULL;
	}
	/* A plain slot is parked (cap.h, "Parked slots"): one CAS, then one
	 * look at the word; it stays parked when that shows no waiter, no
	 * flag, no sweep since a slot was parked (SEM_SWEPT). */
	int parked = hold_park(&hot.cap->sems[SEM_ACTIVE], hold);
	if (unlikely(parked < 0))
		return settle_fast_other(c, conn);     /* shared, waiting, or not ours */
	record_count(&r->xacts);
	__atomic_store_n(&r->cstate, CS_IDLE, __ATOMIC_RELAXED);
	if (unlikely(!parked))
		return settle_finish_null(c, SETTLE_PARK);   /* slots_park_slow */
	return NULL;
}

/* A PQgetResult that may return NULL: then settle (out of line, so that
 * the wrapper's tail call for a ready result saves no register). */
__attribute__((noinline)) static PGresult *get_result_settle(PGconn *conn)
{
	PGresult *r = real.PQgetResult(conn);
	if (!r)
		return settle_after_result(conn);
	return r;
}

/* Called twice or more per statement: the cheapest wrapper of all.  Work
 * can only have completed when it returns NULL, so only then does the
 * wrapper look at the thread (the depth mark: libpq's own calls, inside a
 * synchronous one, are settled by that one's wrapper).  (In pipeline mode
 * libpq says ACTIVE until the program leaves it, even between syncs: the
 * PQexitPipelineMode wrapper settles those.)  A deferred send's connection
 * is told busy (defer.c): with any waiting, the deferred path answers
 * first.  libpq's PQgetResult calls none of the functions the shim wraps
 * (it is a leaf as far as the shim is concerned: checked in libpq 15's
 * PLT calls), so it runs without the depth mark: what a notice processor
 * or event procedure called from it sends is the program's own work and
 * is counted as such.  The layout is read in place with no look at
 * pqint.known: hot.deferrals carries DEFER_NOLAYOUT when it is not. */
SHIM_EXPORT PGresult *PQgetResult(PGconn *conn)
{
	if (unlikely(hot_deferrals()))
		return get_result_deferred(conn);   /* a send waits, or no layout known */
	/* A result is ready (libpq's PGASYNC_READY): libpq's PQgetResult
	 * parses nothing further (a notice or a notify at most) and returns
	 * it, leaving libpq busy: nothing to settle, and a tail call.  (Were
	 * it to return NULL, out of memory, libpq stays busy, and the settle
	 * would have found the connection active and done nothing.) */
	if (!pqint_result_ready(conn))
		return get_result_settle(conn);
	return real.PQgetResult(conn);
}

/*
 * The old COPY API: PQendcopy returns with libpq still "busy" until it has
 * read the ReadyForQuery that follows the COPY's completion, which it only
 * does on the program's next call.  When that message has already arrived,
 * read it now (without blocking: PQgetResult returns NULL at once), so that
 * the connection is idle as soon as the COPY is over, as it is with
 * PQputCopyEnd and PQgetResult.
 */
static int endcopy_and_read(PGconn *conn)
{
	int r = real.PQendcopy(conn);
	if (r == 0 && real.PQtransactionStatus(conn) == PQTRANS_ACTIVE
	    && real.PQconsumeInput(conn) && !real.PQisBusy(conn)) {
		PGresult *extra = real.PQgetResult(conn);
		if (extra)      /* not the NULL expected: keep libpq's order */
			real.PQclear(extra);
	}
	return r;
}

SHIM_EXPORT int PQendcopy(PGconn *conn)
{
	if (t.depth)
		return real.PQendcopy(conn);
	shim_enter();
	int r = OWN(endcopy_and_read(conn));
	struct conn *c = conn_lookup(conn);
	if (c)
		track_settle(c);
	return r;
}

SHIM_EXPORT int PQenterPipelineMode(PGconn *conn)
{
	if (t.depth)
		return real.PQenterPipelineMode(conn);
	shim_enter();
	int was = real.PQpipelineStatus(conn) != PQ_PIPELINE_OFF;
	int r = real.PQenterPipelineMode(conn);
	struct conn *c = conn_lookup(conn);
	if (r && c && !was)
		work_pipeline(c, 1);
	return r;
}

SHIM_EXPORT int PQexitPipelineMode(PGconn *conn)
{
	if (t.depth)
		return real.PQexitPipelineMode(conn);
	shim_enter();
	int r = real.PQexitPipelineMode(conn);
	struct conn *c = conn_lookup(conn);
	if (c) {
		if (r)
			work_pipeline(c, 0);
		track_settle(c);
	}
	return r;
}
