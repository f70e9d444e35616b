/*
 * record.h - the record: what the segment (or the process's private copy)
 * says about this process and its connections, for `pqshim stat` and the
 * reaper.  Writes records and totals; decides nothing.
 */
#ifndef PQSHIM_RECORD_H
#define PQSHIM_RECORD_H

#include "shim.h"

/* CLOCK_REALTIME in ns, as the records keep wall-clock times. */
uint64_t record_now_ns(void);

/* This process's record (g.proc), claimed in the segment if there is room;
 * parent: the pid it was forked from, 0 for getppid(). */
void record_register_process(pid_t parent);

/* Give up this process's record (at exit). */
void record_unregister_process(void);

/* A record for a connection about to open, in the segment if there is
 * room (c->idx >= 0), else c->local. */
void record_claim(struct conn *c);

/* Give the record back (its counters fold into the totals). */
void record_release(struct conn *c, int leaked);

/* Status, state, server, application name and backend as they stand. */
void record_describe(struct conn *c);

/* After a connect or reset step: status and state; the server and backend
 * too once it is up. */
void record_connected(struct conn *c);

/* Another thread used the connection: remember it among those seen. */
void record_thread_seen(struct seg_conn *r, pid_t tid);

/* Totals of the segment (no-ops without one). */
void record_refused(void);
void record_redirected(void);
void record_migrated(void);

/* The policy's path and error as this process knows them, for readers of
 * the segment's header (under its policy_lock). */
void record_publish_policy(void);

#endif
