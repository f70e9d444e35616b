/*
 * wrap_work.c - every way libpq sends work, and the calls after which work
 * may be complete.
 *
 * Statements are counted where they leave (PQexec*, PQprepare, PQdescribe*,
 * PQfn, PQsend*); the connection's state is read back from libpq after the
 * calls that can finish work (the synchronous ones, PQgetResult, PQendcopy,
 * PQexitPipelineMode).  COPY data calls, PQconsumeInput and PQisBusy are not
 * wrapped: they change nothing the shim keeps.
 */
#include "shim.h"
#include "pqerr.h"

#define SYNC (CALL_SENDS | CALL_SETTLE)

/* A call that returns a PGresult: refusal is a FATAL_ERROR result. */
#define WRAP_RESULT(name, kind, params, args) \
	SHIM_EXPORT PGresult *name params \
	{ \
		struct call cl; \
		if (!call_begin(&cl, conn, kind)) \
			return pqerr_result(conn, cl.sqlstate, cl.refusal); \
		PGresult *r = real.name args; \
		call_end(&cl); \
		return r; \
	}

/* A call that returns 1/0: refusal is 0 with the text in PQerrorMessage. */
#define WRAP_INT(name, kind, params, args) \
	SHIM_EXPORT int name params \
	{ \
		struct call cl; \
		if (!call_begin(&cl, conn, kind)) { \
			pqerr_set_message(conn, cl.refusal); \
			return 0; \
		} \
		int r = real.name args; \
		call_end(&cl); \
		return r; \
	}

WRAP_RESULT(PQexec, SYNC, (PGconn *conn, const char *query), (conn, query))
WRAP_RESULT(PQexecParams, SYNC,
	(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
	 const char *const *paramValues, const int *paramLengths, const int *paramFormats,
	 int resultFormat),
	(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat))
WRAP_RESULT(PQprepare, SYNC,
	(PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes),
	(conn, stmtName, query, nParams, paramTypes))
WRAP_RESULT(PQexecPrepared, SYNC,
	(PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues,
	 const int *paramLengths, const int *paramFormats, int resultFormat),
	(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat))
WRAP_RESULT(PQdescribePrepared, SYNC, (PGconn *conn, const char *stmt), (conn, stmt))
WRAP_RESULT(PQdescribePortal, SYNC, (PGconn *conn, const char *portal), (conn, portal))
WRAP_RESULT(PQfn, SYNC,
	(PGconn *conn, int fnid, int *result_buf, int *result_len, int result_is_int,
	 const PQArgBlock *args, int nargs),
	(conn, fnid, result_buf, result_len, result_is_int, args, nargs))

WRAP_INT(PQsendQuery, CALL_SENDS, (PGconn *conn, const char *query), (conn, query))
WRAP_INT(PQsendQueryParams, CALL_SENDS,
	(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
	 const char *const *paramValues, const int *paramLengths, const int *paramFormats,
	 int resultFormat),
	(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat))
WRAP_INT(PQsendPrepare, CALL_SENDS,
	(PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes),
	(conn, stmtName, query, nParams, paramTypes))
WRAP_INT(PQsendQueryPrepared, CALL_SENDS,
	(PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues,
	 const int *paramLengths, const int *paramFormats, int resultFormat),
	(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat))
WRAP_INT(PQsendDescribePrepared, CALL_SENDS, (PGconn *conn, const char *stmt), (conn, stmt))
WRAP_INT(PQsendDescribePortal, CALL_SENDS, (PGconn *conn, const char *portal), (conn, portal))

WRAP_RESULT(PQgetResult, CALL_SETTLE, (PGconn *conn), (conn))
WRAP_INT(PQexitPipelineMode, CALL_SETTLE, (PGconn *conn), (conn))
WRAP_INT(PQendcopy, CALL_SETTLE, (PGconn *conn), (conn))
