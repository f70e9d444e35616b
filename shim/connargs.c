/*
 * connargs.c - a connect's arguments, normalised into one keyword/value
 * list as libpq will read them: a conninfo string or URI given as dbname
 * expanded by libpq's own PQconninfoParse, later values winning.
 */
#include "connargs.h"
#include "real.h"

#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int looks_like_conninfo(const char *s)
{
	return s && (strchr(s, '=') || strncmp(s, "postgresql://", 13) == 0
	             || strncmp(s, "postgres://", 11) == 0);
}

void connargs_set(struct connargs *a, const char *kw, const char *val)
{
	if (!val || !*val)
		return;              /* libpq ignores NULL and empty values too */
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->kw[i], kw) == 0) {
			free(a->val[i]);
			a->val[i] = strdup(val);
			return;
		}
	if (a->n >= CONNARGS_MAX)
		return;
	a->kw[a->n] = strdup(kw);
	a->val[a->n] = strdup(val);
	a->n++;
}

void connargs_free(struct connargs *a)
{
	for (int i = 0; i < a->n; i++) {
		free(a->kw[i]);
		free(a->val[i]);
	}
	a->n = 0;
}

const char *connargs_get(const struct connargs *a, const char *kw)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->kw[i], kw) == 0)
			return a->val[i];
	return NULL;
}

/* Add every non-empty option of a parsed conninfo. */
static int add_parsed(struct connargs *a, const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = real.PQconninfoParse(conninfo, &err);
	if (!opts) {
		if (err)
			real.PQfreemem(err);
		return -1;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		connargs_set(a, o->keyword, o->val);
	real.PQconninfoFree(opts);
	return 0;
}

/* The arguments of a connect call, as libpq will read them: processed in
 * order, the first dbname expanded when asked, later values winning. */
int connargs_from_params(struct connargs *a, const char *const *kw,
                         const char *const *val, int expand)
{
	a->n = 0;
	int expanded = 0;
	for (int i = 0; kw && kw[i]; i++) {
		if (expand && !expanded && strcmp(kw[i], "dbname") == 0) {
			expanded = 1;
			if (looks_like_conninfo(val[i])) {
				if (add_parsed(a, val[i]) != 0)
					return -1;
				continue;
			}
		}
		connargs_set(a, kw[i], val[i]);
	}
	return 0;
}

/* Copy, for keeping with the connection. */
void connargs_copy(struct connargs *dst, const struct connargs *src)
{
	dst->n = 0;
	for (int i = 0; i < src->n; i++)
		connargs_set(dst, src->kw[i], src->val[i]);
}

/* NULL-terminated arrays over a connargs (valid while it lives). */
void connargs_arrays(const struct connargs *a, const char **kw, const char **val)
{
	for (int i = 0; i < a->n; i++) {
		kw[i] = a->kw[i];
		val[i] = a->val[i];
	}
	kw[a->n] = val[a->n] = NULL;
}


/* ---- pg_service.conf ----------------------------------------------------- */

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* Add what section `name` of `file` sets and a lacks.  1 if the section
 * is there. */
static int add_section(struct connargs *a, const char *file, const char *name)
{
	FILE *f = fopen(file, "re");
	if (!f)
		return 0;
	char buf[1024];
	int in = 0, found = 0;
	while (fgets(buf, sizeof buf, f)) {
		char *line = trim(buf);
		if (!*line || *line == '#')
			continue;
		if (*line == '[') {
			char *end = strchr(line, ']');
			if (in)
				break;       /* the section is over */
			in = end && (size_t)(end - line - 1) == strlen(name)
			     && strncmp(line + 1, name, strlen(name)) == 0;
			found |= in;
			continue;
		}
		char *eq = strchr(line, '=');
		if (!in || !eq)
			continue;
		*eq = '\0';
		char *kw = trim(line), *val = trim(eq + 1);
		if (strcmp(kw, "service") != 0 && !connargs_get(a, kw))
			connargs_set(a, kw, val);
	}
	fclose(f);
	return found;
}

void connargs_add_service(struct connargs *a)
{
	const char *s = connargs_get(a, "service");
	if (!s)
		return;
	char name[256], path[PATH_MAX];
	snprintf(name, sizeof name, "%s", s);
	const char *file = getenv("PGSERVICEFILE");
	if (file && *file) {
		if (add_section(a, file, name))
			return;
	} else {
		const char *home = getenv("HOME");
		struct passwd pw, *found = NULL;
		char pwbuf[1024];
		if ((!home || !*home) && getpwuid_r(geteuid(), &pw, pwbuf, sizeof pwbuf, &found) == 0
		    && found)
			home = found->pw_dir;
		if (home && (size_t)snprintf(path, sizeof path, "%s/.pg_service.conf", home) < sizeof path
		    && add_section(a, path, name))
			return;
	}
	const char *sys = getenv("PGSYSCONFDIR");
	if ((size_t)snprintf(path, sizeof path, "%s/pg_service.conf",
	                     sys && *sys ? sys : "/etc/postgresql-common") < sizeof path)
		add_section(a, path, name);
}
