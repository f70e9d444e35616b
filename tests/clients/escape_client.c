/*
 * escape_client.c - a program with a libpq the shim cannot bring back
 * (tests/integration/t_escape.sh).
 *
 *   escape_client copy LIBPQ_COPY CONNINFO     dlopen a renamed copy of libpq
 *                                              and call it through dlsym
 *   escape_client module PLUGIN CONNINFO       dlopen (RTLD_DEEPBIND) a module
 *                                              with a libpq of its own (linked
 *                                              in, or a renamed copy it needs),
 *                                              whose plug_query() connects
 *
 * Either way it also opens one connection through the system's libpq (linked
 * at build time: the shim sees that one), and prints "ESCAPED <pid>" (the
 * escaped connection's backend) and "TRACKED <pid>".
 */
#include <dlfcn.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

typedef PGconn *(*connectdb_fn)(const char *);
typedef ConnStatusType (*status_fn)(const PGconn *);
typedef PGresult *(*exec_fn)(PGconn *, const char *);
typedef char *(*getvalue_fn)(const PGresult *, int, int);
typedef void (*clear_fn)(PGresult *);
typedef void (*finish_fn)(PGconn *);
typedef int (*plug_fn)(const char *, char *, int);

static int via_copy(const char *lib, const char *conninfo, char *out, int n)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(out, n, "dlopen: %s", dlerror());
		return -1;
	}
	/* twice, as a program reloading it would: still one report */
	void *again = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	connectdb_fn connectdb = (connectdb_fn)dlsym(h, "PQconnectdb");
	status_fn status = (status_fn)dlsym(h, "PQstatus");
	exec_fn exec = (exec_fn)dlsym(h, "PQexec");
	getvalue_fn getvalue = (getvalue_fn)dlsym(h, "PQgetvalue");
	clear_fn clear = (clear_fn)dlsym(h, "PQclear");
	finish_fn finish = (finish_fn)dlsym(h, "PQfinish");
	if (!connectdb || !status || !exec || !getvalue || !clear || !finish) {
		snprintf(out, n, "dlsym: %s", dlerror());
		return -1;
	}
	PGconn *c = connectdb(conninfo);
	if (status(c) != CONNECTION_OK) {
		snprintf(out, n, "connect through the copy failed");
		finish(c);
		return -1;
	}
	PGresult *r = exec(c, "select pg_backend_pid()");
	snprintf(out, n, "%s", getvalue(r, 0, 0));
	clear(r);
	finish(c);
	if (again)
		dlclose(again);
	return 0;
}

static int via_module(const char *plugin, const char *conninfo, char *out, int n)
{
	void *h = dlopen(plugin, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!h) {
		snprintf(out, n, "dlopen: %s", dlerror());
		return -1;
	}
	plug_fn query = (plug_fn)dlsym(h, "plug_query");
	if (!query) {
		snprintf(out, n, "dlsym: %s", dlerror());
		return -1;
	}
	return query(conninfo, out, n);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: escape_client copy|module LIB CONNINFO\n");
		return 2;
	}
	char out[512];
	int rc = strcmp(argv[1], "copy") == 0 ? via_copy(argv[2], argv[3], out, sizeof out)
	                                      : via_module(argv[2], argv[3], out, sizeof out);
	if (rc != 0) {
		fprintf(stderr, "escape_client: %s\n", out);
		return 1;
	}
	printf("ESCAPED %s\n", out);

	PGconn *c = PQconnectdb(argv[3]);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "escape_client: %s", PQerrorMessage(c));
		return 1;
	}
	PGresult *r = PQexec(c, "select pg_backend_pid()");
	printf("TRACKED %s\n", PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return 0;
}
