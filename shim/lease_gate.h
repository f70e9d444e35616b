/*
 * lease_gate.h - scope = cluster with an exclusive lane: the leader's side
 * of the cluster's gate (lease_gate.c; the keys and why they suffice are in
 * lease_seg.h, the standby's side in standby.c).  Used by the coordination
 * thread (lease.c) only.
 */
#ifndef PQSHIM_LEASE_GATE_H
#define PQSHIM_LEASE_GATE_H

#include <stdint.h>

#include "lease_seg.h"

/* Does the policy in force need the gate (an exclusive lane)? */
int gate_needed(void);

/* One tick of the leader: take, keep or let go of the gate as the host's
 * exclusive lane and the other hosts' (others_x: a census saw another
 * host's XWANT) say, and let the host's exclusive lane run once the gate
 * is its (seg_lanes.gate).  note: another host notified (try now).  lease:
 * the cluster's slots this host may use (the exclusive needs one).
 * Returns 1 if the host may admit non-exclusive work, 0 if not, -1 lost. */
int gate_tick(struct seg_lease *L, int others_x, int note, uint32_t lease);

/* The leader's session is gone (its locks with it), or a new one starts:
 * it holds nothing.  `standby_held`: the mode of S a promoted standby's
 * session holds already. */
void gate_forget(struct seg_lease *L, uint32_t standby_held);

#endif
