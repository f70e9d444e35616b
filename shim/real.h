/*
 * real.h - libpq's own functions, found wherever libpq was loaded from.
 *
 * The shim defines PQexec & co. itself, so it must reach the real ones
 * through pointers.  libpq may be in the global scope (linked at build time),
 * in a private dlopen scope (CPython extension modules: RTLD_NEXT finds
 * nothing there) or loaded under another name; real_resolve() finds it by
 * name first, then by scanning the loaded objects.  The table is filled once
 * and never changes afterwards, so reading it needs no lock.
 */
#ifndef PQSHIM_REAL_H
#define PQSHIM_REAL_H

#include <libpq-fe.h>
#include <stddef.h>

/* X(name, return type, (parameters)) for every libpq function the shim
 * wraps or calls.  The same list builds the pointer table, the resolver and
 * the table that answers dlsym() look-ups on libpq's handle (wrap_dlsym.c). */
#define REAL_WRAPPED(X) \
	X(PQconnectdb, PGconn *, (const char *conninfo)) \
	X(PQconnectdbParams, PGconn *, (const char *const *keywords, const char *const *values, int expand_dbname)) \
	X(PQsetdbLogin, PGconn *, (const char *pghost, const char *pgport, const char *pgoptions, const char *pgtty, const char *dbName, const char *login, const char *pwd)) \
	X(PQconnectStart, PGconn *, (const char *conninfo)) \
	X(PQconnectStartParams, PGconn *, (const char *const *keywords, const char *const *values, int expand_dbname)) \
	X(PQconnectPoll, PostgresPollingStatusType, (PGconn *conn)) \
	X(PQreset, void, (PGconn *conn)) \
	X(PQresetStart, int, (PGconn *conn)) \
	X(PQresetPoll, PostgresPollingStatusType, (PGconn *conn)) \
	X(PQfinish, void, (PGconn *conn)) \
	X(PQping, PGPing, (const char *conninfo)) \
	X(PQpingParams, PGPing, (const char *const *keywords, const char *const *values, int expand_dbname)) \
	X(PQexec, PGresult *, (PGconn *conn, const char *query)) \
	X(PQexecParams, PGresult *, (PGconn *conn, const char *command, int nParams, const Oid *paramTypes, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat)) \
	X(PQprepare, PGresult *, (PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes)) \
	X(PQexecPrepared, PGresult *, (PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat)) \
	X(PQdescribePrepared, PGresult *, (PGconn *conn, const char *stmt)) \
	X(PQdescribePortal, PGresult *, (PGconn *conn, const char *portal)) \
	X(PQfn, PGresult *, (PGconn *conn, int fnid, int *result_buf, int *result_len, int result_is_int, const PQArgBlock *args, int nargs)) \
	X(PQsendQuery, int, (PGconn *conn, const char *query)) \
	X(PQsendQueryParams, int, (PGconn *conn, const char *command, int nParams, const Oid *paramTypes, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat)) \
	X(PQsendPrepare, int, (PGconn *conn, const char *stmtName, const char *query, int nParams, const Oid *paramTypes)) \
	X(PQsendQueryPrepared, int, (PGconn *conn, const char *stmtName, int nParams, const char *const *paramValues, const int *paramLengths, const int *paramFormats, int resultFormat)) \
	X(PQsendDescribePrepared, int, (PGconn *conn, const char *stmt)) \
	X(PQsendDescribePortal, int, (PGconn *conn, const char *portal)) \
	X(PQgetResult, PGresult *, (PGconn *conn)) \
	X(PQenterPipelineMode, int, (PGconn *conn)) \
	X(PQexitPipelineMode, int, (PGconn *conn)) \
	X(PQendcopy, int, (PGconn *conn)) \
	X(PQgetCancel, PGcancel *, (PGconn *conn)) \
	X(PQfreeCancel, void, (PGcancel *cancel))

/* Called by the shim, never wrapped. */
#define REAL_CALLED(X) \
	X(PQstatus, ConnStatusType, (const PGconn *conn)) \
	X(PQpipelineStatus, PGpipelineStatus, (const PGconn *conn)) \
	X(PQconsumeInput, int, (PGconn *conn)) \
	X(PQisBusy, int, (PGconn *conn)) \
	X(PQtransactionStatus, PGTransactionStatusType, (const PGconn *conn)) \
	X(PQhost, char *, (const PGconn *conn)) \
	X(PQport, char *, (const PGconn *conn)) \
	X(PQdb, char *, (const PGconn *conn)) \
	X(PQuser, char *, (const PGconn *conn)) \
	X(PQparameterStatus, const char *, (const PGconn *conn, const char *paramName)) \
	X(PQerrorMessage, char *, (const PGconn *conn)) \
	X(PQlibVersion, int, (void)) \
	X(PQbackendPID, int, (const PGconn *conn)) \
	X(PQsocket, int, (const PGconn *conn)) \
	X(PQmakeEmptyPGresult, PGresult *, (PGconn *conn, ExecStatusType status)) \
	X(PQresultAlloc, void *, (PGresult *res, size_t nBytes)) \
	X(PQclear, void, (PGresult *res)) \
	X(PQconninfoParse, PQconninfoOption *, (const char *conninfo, char **errmsg)) \
	X(PQconndefaults, PQconninfoOption *, (void)) \
	X(PQconninfoFree, void, (PQconninfoOption *connOptions)) \
	X(PQfreemem, void, (void *ptr)) \
	X(PQgetvalue, char *, (const PGresult *res, int row, int col)) \
	X(PQntuples, int, (const PGresult *res)) \
	X(PQresultErrorField, char *, (const PGresult *res, int fieldcode)) \
	X(PQresultStatus, ExecStatusType, (const PGresult *res)) \
	X(PQresultErrorMessage, char *, (const PGresult *res)) \
	X(PQsetNoticeReceiver, PQnoticeReceiver, (PGconn *conn, PQnoticeReceiver proc, void *arg)) \
	X(PQsetNoticeProcessor, PQnoticeProcessor, (PGconn *conn, PQnoticeProcessor proc, void *arg)) \
	X(PQisnonblocking, int, (const PGconn *conn)) \
	X(PQsetnonblocking, int, (PGconn *conn, int arg)) \
	X(PQsslInUse, int, (PGconn *conn)) \
	X(PQescapeLiteral, char *, (PGconn *conn, const char *str, size_t len)) \
	X(PQescapeIdentifier, char *, (PGconn *conn, const char *str, size_t len))

#define REAL_DECLARE(name, ret, params) ret (*name) params;
struct real_libpq {
	REAL_WRAPPED(REAL_DECLARE)
	REAL_CALLED(REAL_DECLARE)
};
#undef REAL_DECLARE

extern struct real_libpq real __attribute__((visibility("hidden")));

/* Fill `real` once (thread-safe); returns 0 when every function was found. */
int real_resolve(void);

/* The real dlsym (glibc's), for code that must not go through the shim's. */
extern void *(*real_dlsym)(void *handle, const char *name);
void real_dlsym_init(void);

/* A symbol of libpq or of a library it loaded (OpenSSL), or NULL. */
void *real_libpq_dep(const char *name);

#endif
