/*
 * drain.h - a connection that is never used again must not stay on a
 * target the policy forbids (drain.c).
 */
#ifndef PQSHIM_DRAIN_H
#define PQSHIM_DRAIN_H

/* Start counting switches from the one in force now (the ticker's start). */
void drain_begin(void);

/* One look, four times a second (the ticker thread, reload.c): a moment
 * after a switch, end the backends of this process's idle connections
 * still on the forbidden target. */
void drain_step(void);

#endif
