/*
 * route.c - where a connection goes: the primary, the replica, or wherever
 * the program asked (direct).
 *
 * The program's connect arguments (connargs.c), with those of a
 * `service=NAME` they name from pg_service.conf, are compared with the
 * policy's; the values libpq would fill in itself (PGHOST, PGPORT,
 * PGSERVICE, compiled defaults) come from PQconndefaults.  A connection
 * "is the primary" when every keyword of the policy's `primary` has the
 * same effective value.  Redirected, it keeps every keyword the program
 * gave except those `replica` names, and gets
 * default_transaction_read_only=on added to its options, so that a write
 * fails at the server with SQLSTATE 25006.
 */
#include "route.h"
#include "readonly.h"
#include "real.h"
#include "shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		connargs_set(a, o->keyword, o->val);
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
	connargs_set(a, "options", both);
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
	/* Matched as libpq will connect: a service=NAME's values included
	 * (the program's own keywords first, then the service's, then the
	 * defaults).  A redirect keeps the program's arguments, service
	 * included: the replica's keywords, given, win over the service's. */
	struct connargs eff;
	connargs_copy(&eff, a);
	connargs_add_service(&eff);
	if (matches(&eff, primary, defaults)) {
		target = TGT_PRIMARY;
		if (readonly_on() && replica[0]) {
			connargs_copy(out, a);
			to_replica(out, replica, defaults);
			*redirect = 1;
			target = TGT_REPLICA;
		}
	} else if (matches(&eff, replica, defaults)) {
		target = TGT_REPLICA;
	}
	connargs_free(&eff);
	if (defaults)
		real.PQconninfoFree(defaults);
	return target;
}

/* Connect with normalised arguments, through the real libpq. */
PGconn *route_connect(const struct connargs *a, int async)
{
	const char *kw[CONNARGS_MAX + 1], *val[CONNARGS_MAX + 1];
	connargs_arrays(a, kw, val);
	return async ? real.PQconnectStartParams(kw, val, 0) : real.PQconnectdbParams(kw, val, 0);
}
