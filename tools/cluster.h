/*
 * cluster.h - what `pqshim stat` and `top` show of scope = cluster: this
 * host's lease (from the segment) and every host's, read from the
 * coordinator itself (pg_locks: the slot locks each leader's session holds;
 * pg_stat_activity: the host name, active and waiting figures each leader
 * publishes in its application_name, at most a second old).  The tool's
 * own connection to the coordinator is made with libpq; nothing shown
 * contains a password.
 */
#ifndef PQSHIM_TOOL_CLUSTER_H
#define PQSHIM_TOOL_CLUSTER_H

#include "snapshot.h"

#define CLUSTER_MAX_HOSTS 64

struct cluster_host {
	char host[LEASE_HOST_MAX];
	uint32_t leased, active, waiting;
	int wants, pid, local;
};

/* A lane's slots across hosts (capped, non-exclusive lanes only). */
struct cluster_lane {
	char name[CAP_LANE_NAME];
	unsigned index;                  /* in the segment's table (its keys' l) */
	uint32_t max_active;             /* the policy's: the cluster's cap of the lane */
	uint32_t leased;                 /* this host's share (the segment) */
	uint32_t held;                   /* held by every host (the coordinator) */
};

struct cluster_view {
	int on;                          /* the cap's scope is cluster */
	struct seg_lease lease;          /* this host's, as the segment says */
	char coordinator[LEASE_CONNINFO_MAX];
	int reached;                     /* the coordinator answered */
	char error[LEASE_ERROR_MAX];     /* why not */
	uint32_t held, max_active;
	int nhosts;
	struct cluster_host hosts[CLUSTER_MAX_HOSTS];
	int nlanes;
	struct cluster_lane lanes[CAP_LANES];
	int gated;                       /* the policy has an exclusive lane (lease_seg.h) */
	uint32_t gate_exclusive;         /* sessions holding the gate's G exclusive (the coordinator) */
};

/* Read the cluster as it stands for snapshot s (this host's lease from the
 * segment, every host's from the coordinator).  The writers below show it
 * for that snapshot; for any other (or when the scope is not cluster) they
 * write nothing. */
void cluster_read(const struct segment *seg, const struct snapshot *s);

/* The "cluster" member of stat --json (with its trailing comma and newline). */
void cluster_json(FILE *out, const struct snapshot *s);
void cluster_table(FILE *out, const struct snapshot *s);
void cluster_prometheus(FILE *out, const struct snapshot *s);

#endif
