/*
 * lease.h - scope = cluster: the shim's hooks into the lease (lease.c; the
 * design, the keys and the shared state are in lease_seg.h).
 */
#ifndef PQSHIM_LEASE_H
#define PQSHIM_LEASE_H

#include <stddef.h>

#include "lease_seg.h"

/* ---- the shim's hooks (lease.c) ---------------------------------------- */

/* The policy says scope = cluster (start-up, reload): set the segment's
 * lease up and start this process's coordination thread. */
void lease_configure(void);

/* On the slot's slow path: NULL, or why a slot cannot be had at all (the
 * coordinator unreachable with on_error = fail-closed), written into buf.
 * Starts the coordination thread of a fork child that has none. */
const char *lease_check(char *buf, size_t size);

/* The same without waiting for a leader that is connecting: between the
 * slices of a wait already queued (the coordinator lost meanwhile). */
const char *lease_refused(char *buf, size_t size);

/* In a fork child: forget the parent's coordination connection without
 * ending its session (its socket is closed, nothing is sent). */
void lease_after_fork(void);

#endif
