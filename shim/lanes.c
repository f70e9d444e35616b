/*
 * lanes.c - which lane a connection is in.  The lane is chosen once, at
 * connect, from what libpq itself will use: the program's arguments as
 * libpq parses them (connargs.c), and PQconndefaults for the rest (the
 * environment, the login).  It is kept for the connection's life by name:
 * a later SET application_name does not move it, a reload that renames
 * the lanes finds it again, and one that removes it sends it to the
 * default lane at its next transaction.
 */
#include "lanes.h"

#include <errno.h>   /* program_invocation_short_name */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

/* The policy's lanes, copied whole even during a reload (as route.c). */
static int lanes_now(struct policy_lane *out)
{
	int n;
	for (;;) {
		unsigned s1 = __atomic_load_n(&g.pol_seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		n = g.pol.nlanes;
		if (n < 0 || n > POLICY_MAX_LANES)
			n = 0;
		memcpy(out, g.pol.lanes, (size_t)n * sizeof *out);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&g.pol_seq, __ATOMIC_RELAXED) == s1)
			return n;
	}
}

static const char *default_of(PQconninfoOption *d, const char *kw)
{
	for (; d && d->keyword; d++)
		if (strcmp(d->keyword, kw) == 0)
			return d->val && *d->val ? d->val : NULL;
	return NULL;
}

static const char *effective(const struct connargs *a, PQconninfoOption *d, const char *kw)
{
	const char *v = connargs_get(a, kw);
	return v && *v ? v : default_of(d, kw);
}

static int holds(const struct lane_match *m, const char *program, const char *appname,
                 const char *user, const char *dbname)
{
	switch (m->kind) {
	case MATCH_PROGRAM:
		return fnmatch(m->pattern, program, 0) == 0;
	case MATCH_APPLICATION_NAME:
		return appname && fnmatch(m->pattern, appname, 0) == 0;
	case MATCH_USER:
		return user && strcmp(m->pattern, user) == 0;
	case MATCH_DBNAME:
		return dbname && strcmp(m->pattern, dbname) == 0;
	}
	return 0;
}

void lanes_choose(struct conn *c, const struct connargs *asked, const char *const *kw,
                  const char *const *val, int expand)
{
	static struct policy_lane lanes[POLICY_MAX_LANES];   /* under the mutex below */
	static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
	if (!c)
		return;
	c->lane[0] = '\0';
	/* a reused record says nothing about this connection (seg_conn_claim
	 * clears only the holds); no active slot is held before the connect */
	c->rec->lane = 0;
	c->rec->lane_held = 0;
	if (!lanes_enabled())
		return;
	struct connargs own = { 0 };
	const struct connargs *a = asked;
	if (!a || a->n == 0) {
		if (connargs_from_params(&own, kw, val, expand) != 0)
			connargs_free(&own);   /* unparsable: libpq's defaults decide */
		a = &own;
	}
	PQconninfoOption *d = OWN(real.PQconndefaults());
	const char *appname = effective(a, d, "application_name");
	if (!appname)
		appname = effective(a, d, "fallback_application_name");
	const char *user = effective(a, d, "user");
	const char *dbname = effective(a, d, "dbname");
	if (!dbname)
		dbname = user;       /* libpq's own last resort */
	const char *program = program_invocation_short_name;
	pthread_mutex_lock(&mutex);
	int n = lanes_now(lanes);
	for (int i = 0; i < n; i++) {
		int all = lanes[i].nmatch > 0;
		for (int k = 0; all && k < lanes[i].nmatch; k++)
			all = holds(&lanes[i].match[k], program, appname, user, dbname);
		if (all) {
			snprintf(c->lane, sizeof c->lane, "%s", lanes[i].name);
			break;
		}
	}
	pthread_mutex_unlock(&mutex);
	if (d)
		OWN(real.PQconninfoFree(d));
	connargs_free(&own);
	c->lane_gen = 0;         /* resolved at its first slot (lanes_index) */
	lanes_index(c);
}

unsigned lanes_index(struct conn *c)
{
	struct seg_cap *cap = hot.cap;
	if (!cap)
		return 0;
	unsigned gen = __atomic_load_n(&cap->lanes.gen, __ATOMIC_ACQUIRE);
	if (c->lane_gen != gen || gen == 0) {
		c->rec->lane = (uint8_t)cap_lane_find(cap, c->lane);
		c->lane_gen = gen;
	}
	return c->rec->lane;
}
