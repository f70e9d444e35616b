/*
 * connargs.h - a connect's arguments, normalised (connargs.c).
 */
#ifndef PQSHIM_CONNARGS_H
#define PQSHIM_CONNARGS_H

/* Owns its strings. */
#define CONNARGS_MAX 64
struct connargs {
	int n;
	char *kw[CONNARGS_MAX];
	char *val[CONNARGS_MAX];
};

/* The arguments of a connect call, as libpq will read them: processed in
 * order, the first dbname expanded when asked.  0, or -1 if unparsable. */
int connargs_from_params(struct connargs *a, const char *const *kw,
                         const char *const *val, int expand);
/* Set kw (NULL or empty values are ignored, as libpq does). */
void connargs_set(struct connargs *a, const char *kw, const char *val);
void connargs_copy(struct connargs *dst, const struct connargs *src);
void connargs_free(struct connargs *a);
const char *connargs_get(const struct connargs *a, const char *kw);
/* A `service` keyword that a gave explicitly: the keywords its section of
 * pg_service.conf sets and a does not, added to a, as libpq reads the file
 * (PGSERVICEFILE, else ~/.pg_service.conf; if the service is not there,
 * PGSYSCONFDIR/pg_service.conf, else Debian's /etc/postgresql-common/).
 * A service from PGSERVICE is PQconndefaults' business. */
void connargs_add_service(struct connargs *a);
/* NULL-terminated arrays over a (valid while it lives); kw and val have
 * room for a->n + 1 entries. */
void connargs_arrays(const struct connargs *a, const char **kw, const char **val);

#endif
