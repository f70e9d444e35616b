/*
 * route.h - where a connection goes: the primary, the replica, or wherever
 * the program asked (route.c).
 */
#ifndef PQSHIM_ROUTE_H
#define PQSHIM_ROUTE_H

#include "connargs.h"
#include "shim.h"

/* Does the policy route at all (a [read_only] primary or replica)? */
static inline int route_enabled(void)
{
	return g.pol.primary[0] || g.pol.replica[0];
}

/* Where the connection described by `a` goes now (TGT_*).  `out` gets the
 * arguments to connect with when they differ from the program's (*redirect
 * = 1). */
int route_plan(const struct connargs *a, struct connargs *out, int *redirect);

/* Connect with normalised arguments, through the real libpq (the caller
 * marks the call as the shim's own). */
PGconn *route_connect(const struct connargs *a, int async);

#endif
