/*
 * deepbind_mod.c - a module that binds libpq directly, as PHP's pgsql.so
 * does (tests/integration/t_deepbind.sh builds it bind-now with RELRO,
 * lazy without, and as a library whose constructor uses it).
 *
 *   mod_run(conninfo)               one connection, one statement, closed:
 *                                   the backend's pid, or -1
 *   mod_run_inner(path, conninfo)   the same through a module this one
 *                                   loads itself with RTLD_DEEPBIND (its own
 *                                   dlopen binds to libc's, past the shim's)
 * With -DCTOR, a constructor runs mod_run_inner($DEEPBIND_CTOR_MOD,
 * $DEEPBIND_CONNINFO) before main and leaves the pid in mod_ctor_pid.
 */
#include <dlfcn.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

int mod_run(const char *conninfo);
int mod_run_inner(const char *path, const char *conninfo);

int mod_run(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "deepbind_mod: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PGresult *r = PQexec(c, "select pg_backend_pid()");
	int pid = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
	PQclear(r);
	PQfinish(c);
	return pid;
}

int mod_run_inner(const char *path, const char *conninfo)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!h) {
		fprintf(stderr, "deepbind_mod: %s\n", dlerror());
		return -1;
	}
	int (*run)(const char *) = (int (*)(const char *))dlsym(h, "mod_run");
	int pid = run ? run(conninfo) : -1;
	dlclose(h);
	return pid;
}

#ifdef CTOR
int mod_ctor_pid = -1;

__attribute__((constructor)) static void mod_ctor(void)
{
	const char *conninfo = getenv("DEEPBIND_CONNINFO"), *mod = getenv("DEEPBIND_CTOR_MOD");
	if (conninfo && mod)
		mod_ctor_pid = mod_run_inner(mod, conninfo);
}
#endif
