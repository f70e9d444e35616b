/*
 * tests/bench/passthru.c - the floor of section 1 (results.md): a preload
 * library, built for the benchmark only and never shipped, that wraps the
 * calls pqshim's fast path wraps on a `pgbench -S` transaction (the sends
 * and PQgetResult) and does nothing but call libpq: what any preloaded
 * wrapper costs before it does any work.  Each wrapper is one indirect jump
 * to libpq's function, found with dlsym(RTLD_NEXT) at load time.  Built as
 * build/bench/passthru/libpqshim.so, so that overhead.sh counts it as it
 * counts the shim.  (_GNU_SOURCE, for RTLD_NEXT: the build defines it.)
 */
#include <dlfcn.h>
#include <libpq-fe.h>

static int (*send_query)(PGconn *, const char *);
static int (*send_query_prepared)(PGconn *, const char *, int, const char *const *,
                                  const int *, const int *, int);
static int (*send_prepare)(PGconn *, const char *, const char *, int, const Oid *);
static PGresult *(*get_result)(PGconn *);

__attribute__((constructor)) static void passthru_init(void)
{
	send_query = (int (*)(PGconn *, const char *))dlsym(RTLD_NEXT, "PQsendQuery");
	send_query_prepared = (int (*)(PGconn *, const char *, int, const char *const *,
	                               const int *, const int *, int))
	                      dlsym(RTLD_NEXT, "PQsendQueryPrepared");
	send_prepare = (int (*)(PGconn *, const char *, const char *, int, const Oid *))
	               dlsym(RTLD_NEXT, "PQsendPrepare");
	get_result = (PGresult *(*)(PGconn *))dlsym(RTLD_NEXT, "PQgetResult");
}

__attribute__((visibility("default"))) int PQsendQuery(PGconn *conn, const char *query)
{
	return send_query(conn, query);
}

__attribute__((visibility("default"))) int
PQsendQueryPrepared(PGconn *conn, const char *name, int n, const char *const *values,
                    const int *lengths, const int *formats, int result_format)
{
	return send_query_prepared(conn, name, n, values, lengths, formats, result_format);
}

__attribute__((visibility("default"))) int
PQsendPrepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types)
{
	return send_prepare(conn, name, query, n, types);
}

__attribute__((visibility("default"))) PGresult *PQgetResult(PGconn *conn)
{
	return get_result(conn);
}
