/*
 * snap_lanes.h - the lanes of a segment as the tool shows them
 * (snap_lanes.c): read into the snapshot, then written as JSON, Prometheus
 * text and table lines by stat and top.
 */
#ifndef PQSHIM_SNAP_LANES_H
#define PQSHIM_SNAP_LANES_H

#include "segment.h"

#include <stdio.h>

struct snap_lane {
	char name[CAP_LANE_NAME];
	uint32_t max_active, active, waiting, exclusive;
	int32_t priority;
	uint64_t acquired, waits, timeouts, wait_ns_sum;
	uint64_t hist[CAP_HIST_BUCKETS];
	double wait_ms_p99;
};

struct snap_lanes {
	int n;                         /* the default lane and the policy's: >= 1 */
	struct snap_lane lane[CAP_LANES];
};

struct snapshot;

/* Fill s->lanes from the segment, and make s->cap's figures count the
 * lanes' waiters and show "no cap" as 0 (cap.h, CAP_UNCAPPED). */
void snap_read_lanes(const struct seg_header *h, struct snapshot *s);

/* The name of a connection's lane ("default" for lane 0 or one unknown). */
const char *snap_lane_name(const struct snapshot *s, const struct seg_conn *c);

/* "lanes": [...] for --json (SPEC.md's fields), with its trailing ",\n". */
void snap_json_lanes(FILE *out, const struct snapshot *s);

/* lane="NAME" for Prometheus (backslash, quote, newline escaped), at most
 * SNAP_LANE_LABEL_MAX bytes with its NUL. */
#define SNAP_LANE_LABEL_MAX (2 * CAP_LANE_NAME + 16)
void snap_lane_label(char *buf, size_t size, const char *name);

/* The pqshim_lane_* gauges and counters, each with a lane label (the wait
 * histogram is pqshim_wait_seconds's per-lane series, cmd_stat.c). */
void snap_prom_lanes(FILE *out, const struct snapshot *s);

/* One line per lane for the table and top ("" when the policy has none). */
void snap_table_lanes(FILE *out, const struct snapshot *s);

#endif
