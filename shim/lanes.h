/*
 * lanes.h - which lane a connection is in (lanes.c): chosen at connect
 * from the connection's effective parameters, kept for its life.  The
 * lanes' slots are the cap's (cap.h, "Lanes"); slots.c takes them.
 */
#ifndef PQSHIM_LANES_H
#define PQSHIM_LANES_H

#include "shim.h"

/* Does the policy in force have lanes? */
static inline int lanes_enabled(void)
{
	return __atomic_load_n(&g.pol.nlanes, __ATOMIC_RELAXED) > 0;
}

/*
 * Choose c's lane from the connect's arguments (asked, when the caller
 * parsed them already, else kw/val/expand as PQconnectdbParams takes
 * them), with libpq's defaults for what the program left out: program
 * name, application_name (PGAPPNAME, fallback_application_name), user
 * (PGUSER, the login), dbname (PGDATABASE, the user).  The first lane of
 * the policy whose every condition holds; none: the default lane.
 */
void lanes_choose(struct conn *c, const struct connargs *asked, const char *const *kw,
                  const char *const *val, int expand);

/* c's lane in the cap's table in force (by name: a reload may have
 * renumbered or removed it; removed, the default lane, 0). */
unsigned lanes_index(struct conn *c);

#endif
