/*
 * track.h - the connection's life (track.c): the connect's rules and
 * record, the steps of a connect or reset, the close.
 */
#ifndef PQSHIM_TRACK_H
#define PQSHIM_TRACK_H

#include "shim.h"

/* Before a connect: the rules, a record, and a connection slot (which may
 * wait).  NULL with *cp set (NULL: go on untracked), or the reason the
 * connect is refused (in buf). */
const char *track_connect_begin(struct conn **cp, char *buf, size_t size);

/* After the connect returned pg (NULL only when libpq ran out of memory).
 * Takes the arguments (args) the route was planned from. */
void track_connect_end(struct conn *c, PGconn *pg, struct connargs *args,
                       const struct connargs *where, int target, int redirected);

/* After a connect or reset step: status, state and server as they stand. */
void track_connected(PGconn *pg);

/* PQreset/PQresetStart: 1 when the reset was done here (it follows a
 * read-only switch), 0 when libpq resets as usual. */
int track_reset(PGconn *pg, int async);

/* PQfinish (before libpq's). */
void track_close(PGconn *pg);

#endif
