/*
 * standby.h - scope = cluster: the host's standby (standby.c; the design in
 * lease_seg.h).  Used by the coordination thread (lease.c) only.
 */
#ifndef PQSHIM_STANDBY_H
#define PQSHIM_STANDBY_H

#include <pthread.h>

#include "lease_seg.h"

/* Take a robust process-shared mutex (try: trylock): 0 once held, a dead
 * holder's made consistent; else the error (EBUSY for a try). */
int standby_take(pthread_mutex_t *m, int try);

/* Be the standby (the caller holds L->standby): hold the leader's keys too,
 * on a session of our own, until the leader goes.  1 once this thread
 * holds L->leader (L->standby let go), 0 when the process is exiting. */
int standby_run(struct seg_lease *L);

/* What the standby's session holds of the gate's S (enum lease_gate_mode):
 * a promoted standby's leader starts from it. */
uint32_t standby_gate_held(void);

#endif
