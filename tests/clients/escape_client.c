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
 *   escape_client none - CONNINFO              nothing of the above
 *
 * Then it opens one connection through the libpq it was linked with (the
 * system's, or in t_escape.sh also a renamed copy: the shim sees that one),
 * and prints "ESCAPED <pid>" (the escaped connection's backend) and
 * "TRACKED <pid>".
 */
#include "escape_pq.h"

#include <dlfcn.h>
#include <string.h>

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
	struct pq pq = {
		(PGconn *(*)(const char *))dlsym(h, "PQconnectdb"),
		(ConnStatusType (*)(const PGconn *))dlsym(h, "PQstatus"),
		(char *(*)(const PGconn *))dlsym(h, "PQerrorMessage"),
		(PGresult *(*)(PGconn *, const char *))dlsym(h, "PQexec"),
		(char *(*)(const PGresult *, int, int))dlsym(h, "PQgetvalue"),
		(void (*)(PGresult *))dlsym(h, "PQclear"),
		(void (*)(PGconn *))dlsym(h, "PQfinish"),
	};
	if (!pq.connectdb || !pq.status || !pq.errormessage || !pq.exec || !pq.getvalue
	    || !pq.clear || !pq.finish) {
		snprintf(out, n, "dlsym: %s", dlerror());
		return -1;
	}
	int rc = pq_backend_pid(&pq, conninfo, out, n);
	if (again)
		dlclose(again);
	return rc;
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
		fprintf(stderr, "usage: escape_client copy|module|none LIB CONNINFO\n");
		return 2;
	}
	char out[512];
	if (strcmp(argv[1], "none") != 0) {
		int rc = strcmp(argv[1], "copy") == 0 ? via_copy(argv[2], argv[3], out, sizeof out)
		                                      : via_module(argv[2], argv[3], out, sizeof out);
		if (rc != 0) {
			fprintf(stderr, "escape_client: %s\n", out);
			return 1;
		}
		printf("ESCAPED %s\n", out);
	}

	const struct pq system = { PQconnectdb, PQstatus, PQerrorMessage, PQexec, PQgetvalue,
	                           PQclear, PQfinish };
	if (pq_backend_pid(&system, argv[3], out, sizeof out) != 0) {
		fprintf(stderr, "escape_client: %s", out);
		return 1;
	}
	printf("TRACKED %s\n", out);
	return 0;
}
