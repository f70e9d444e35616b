/*
 * defer.h - an event loop's statement waits its turn without blocking the
 * loop (defer.c), inside the work path.
 */
#ifndef PQSHIM_DEFER_H
#define PQSHIM_DEFER_H

#include "shim.h"

enum defer_kind {
	DEFER_QUERY, DEFER_PARAMS, DEFER_PREPARED, DEFER_PREPARE,
	DEFER_DESCRIBE_PREPARED, DEFER_DESCRIBE_PORTAL,
};

/* Keep a copy of a send for later.  0, or -1 (out of memory: send now). */
int defer_save(struct conn *c, enum defer_kind kind, const char *command, const char *name,
               int nparams, const Oid *types, const char *const *values, const int *lengths,
               const int *formats, int result_format);

/* A slot may be free for this thread's deferred sends: send what can go. */
void defer_kick(void);

/* PQgetResult on c while its send is deferred: *answered = 1 and the
 * result (or NULL) to return, or *answered = 0: sent now, ask libpq. */
PGresult *defer_result(struct conn *c, int *answered);

/* PQfinish: drop whatever waits. */
void defer_forget(struct conn *c);

/* A fork child: what the parent's loops deferred is theirs to send. */
void defer_after_fork(void);

#endif
