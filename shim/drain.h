/*
 * drain.h - a connection that is never used again must not stay on a
 * target the policy forbids (drain.c).
 */
#ifndef PQSHIM_DRAIN_H
#define PQSHIM_DRAIN_H

#include "segment.h"

/* Start counting switches from the one in force now (the ticker's start). */
void drain_begin(void);

/* One look, four times a second (the ticker thread, reload.c): a moment
 * after a switch, end the backends of this process's idle connections
 * still on the forbidden target. */
void drain_step(void);

/* After a switch, busy programs move by themselves first: a drain ends
 * idle connections only this long after it (here, in the signal handler
 * and in the drainer). */
#define DRAIN_GRACE_MS 1000

/* Is r an idle connection on the target `forbidden` that a drain ends
 * (one in a transaction too, with intx: in_transaction = terminate past
 * drain_timeout)? */
static inline int drain_idle_on(const struct seg_conn *r, uint32_t forbidden, int intx)
{
	uint32_t st = __atomic_load_n(&r->cstate, __ATOMIC_RELAXED);
	return r->target == forbidden && r->status == CST_OK && r->backend_pid
	       && (st == CS_IDLE || (intx && st == CS_IN_TRANSACTION));
}

/* The drainer's signal (drainer.c): SIGURG, sigqueue'd with this value. */
#define DRAIN_SIGNAL_MAGIC 0x70717368   /* "pqsh" */

/* In a process without a ticker: catch the drainer's signal, once (the
 * handler ends this process's idle connections on the forbidden target,
 * drain.c). */
void drain_signal_install(void);

/* Log what the handler did since the last call (from a tick). */
void drain_signal_report(void);

#endif
