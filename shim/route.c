/*
 * route.c - where a connection goes: the primary, the replica, or wherever
 * the program asked (direct).
 *
 * A connect's arguments are normalised into one keyword/value list, with a
 * conninfo string or URI given as dbname expanded by libpq's own
 * PQconninfoParse; the values libpq would fill in itself (PGHOST, PGPORT,
 * PGSERVICE, compiled defaults) come from PQconndefaults.  A connection
 * "is the primary" when every keyword of the policy's `primary` has the
 * same effective value.  Redirected, it keeps every keyword the program
 * gave except those `replica` names, and gets
 * default_transaction_read_only=on added to its options, so that a write
 * fails at the server with SQLSTATE 25006.
 */
#include "shim.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

static int looks_like_conninfo(const char *s)
{
	return s && (strchr(s, '=') || strncmp(s, "postgresql://", 13) == 0
	             || strncmp(s, "postgres://", 11) == 0);
}

static void set_arg(struct connargs *a, const char *kw, const char *val)
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
		set_arg(a, o->keyword, o->val);
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
		set_arg(a, kw[i], val[i]);
	}
	return 0;
}

/* Copy, for keeping with the connection. */
void connargs_copy(struct connargs *dst, const struct connargs *src)
{
	dst->n = 0;
	for (int i = 0; i < src->n; i++)
		set_arg(dst, src->kw[i], src->val[i]);
}

/* Does every keyword of `want` (a conninfo) have that value in `a`, with
 * libpq's defaults for what the program left out? */
static int matches(const struct connargs *a, const char *want, PQconninfoOption *defaults)
{
	if (!want || !*want)
		return 0;
	char *err = NULL;
	PQconninfoOption *opts = real.PQconninfoParse(want, &err);
	if (!opts) {
		if (err)
			real.PQfreemem(err);
		return 0;
	}
	int any = 0, all = 1;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		any = 1;
		const char *have = connargs_get(a, o->keyword);
		if (!have && defaults)
			for (PQconninfoOption *d = defaults; d->keyword; d++)
				if (strcmp(d->keyword, o->keyword) == 0)
					have = d->val;
		if (!have || strcmp(have, o->val) != 0)
			all = 0;
	}
	real.PQconninfoFree(opts);
	return any && all;
}

/* Rewrite a (a primary connection) to go to the replica. */
static void to_replica(struct connargs *a, const char *replica, PQconninfoOption *defaults)
{
	char *err = NULL;
	PQconninfoOption *opts = real.PQconninfoParse(replica, &err);
	if (!opts) {
		if (err)
			real.PQfreemem(err);
		return;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		set_arg(a, o->keyword, o->val);
	real.PQconninfoFree(opts);

	/* Keep the options the connection would have had (PGOPTIONS too). */
	const char *options = connargs_get(a, "options");
	if (!options && defaults)
		for (PQconninfoOption *d = defaults; d->keyword; d++)
			if (strcmp(d->keyword, "options") == 0)
				options = d->val;
	const char *ro = "-c default_transaction_read_only=on";
	size_t len = (options ? strlen(options) + 1 : 0) + strlen(ro) + 1;
	char *both = malloc(len);
	if (!both)
		return;
	snprintf(both, len, "%s%s%s", options ? options : "", options ? " " : "", ro);
	set_arg(a, "options", both);
	free(both);
}

/* The policy's primary and replica, copied whole even during a reload. */
static void routes_now(char *primary, char *replica)
{
	for (;;) {
		unsigned s1 = __atomic_load_n(&g.pol_seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		memcpy(primary, g.pol.primary, POLICY_STR_MAX);
		memcpy(replica, g.pol.replica, POLICY_STR_MAX);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&g.pol_seq, __ATOMIC_RELAXED) == s1)
			break;
	}
	primary[POLICY_STR_MAX - 1] = replica[POLICY_STR_MAX - 1] = '\0';
}

/*
 * Decide where the connection described by `a` goes now.  Fills `out` with
 * the arguments to connect with when they differ from the program's (a
 * redirect), and returns the target.
 */
int route_plan(const struct connargs *a, struct connargs *out, int *redirect)
{
	*redirect = 0;
	out->n = 0;
	char primary[POLICY_STR_MAX], replica[POLICY_STR_MAX];
	routes_now(primary, replica);
	if (!primary[0] && !replica[0])
		return TGT_DIRECT;
	PQconninfoOption *defaults = real.PQconndefaults();
	int target = TGT_DIRECT;
	if (matches(a, primary, defaults)) {
		target = TGT_PRIMARY;
		if (__atomic_load_n(&g.read_only, __ATOMIC_ACQUIRE) && replica[0]) {
			connargs_copy(out, a);
			to_replica(out, replica, defaults);
			*redirect = 1;
			target = TGT_REPLICA;
		}
	} else if (matches(a, replica, defaults)) {
		target = TGT_REPLICA;
	}
	if (defaults)
		real.PQconninfoFree(defaults);
	return target;
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

/* Connect with normalised arguments, through the real libpq. */
PGconn *route_connect(const struct connargs *a, int async)
{
	const char *kw[CONNARGS_MAX + 1], *val[CONNARGS_MAX + 1];
	connargs_arrays(a, kw, val);
	return async ? real.PQconnectStartParams(kw, val, 0) : real.PQconnectdbParams(kw, val, 0);
}
