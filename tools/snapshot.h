/*
 * snapshot.h - one consistent picture of a segment, and the figures the
 * tool derives from it (cap use, wait quantiles, read-only, forbidden
 * target), shared by `pqshim stat`, `top` and `drain`.
 *
 * A snapshot is a private copy: each record is copied with its generation
 * checked before and after (seg_proc_read/seg_conn_read), so a snapshot
 * never shows a torn record and taking one never blocks a writer.
 */
#ifndef PQSHIM_SNAPSHOT_H
#define PQSHIM_SNAPSHOT_H

#include "cmds.h"
#include "snap_lanes.h"

#include <stdio.h>

/* The subcommands built on snapshots (cmds.h has the others). */
int cmd_top(int argc, char **argv);
int cmd_drain(int argc, char **argv);

/* What a command looks at: the segment, mapped, and the policy it names. */
struct snap_source {
	struct segment seg;
	char segname[POLICY_STR_MAX];
	char policy_path[POLICY_STR_MAX];   /* "" when none was named */
	uint32_t gid;                       /* the segment's group, or SEG_NO_GROUP */
};

/* A segment file this user may see: its own, or one of its groups'. */
struct snap_found {
	char path[128];
	char name[SEG_NAME_MAX + 1];
	uint32_t gid;                       /* SEG_NO_GROUP: this user's own */
};

/* One semaphore of the cap, as read. */
struct snap_sem {
	uint32_t max, count, waiting;
	uint64_t acquired, waits, timeouts, refused, wait_ns_sum;
	uint64_t hist[CAP_HIST_BUCKETS];
};

/* The cap as SPEC.md's "cap" object shows it. */
struct snap_cap {
	const char *scope;
	uint32_t max_active, active, waiting;
	uint32_t max_connections, connections;
	uint64_t acquired, waits, timeouts, refused, wait_ns_sum;
	uint64_t hist[CAP_HIST_BUCKETS];    /* both semaphores' waits */
	uint64_t hist_count;
	double wait_ms_p50, wait_ms_p99;
	struct snap_sem sems[CAP_SEMS];
};

/* A queued waiter, as the wait queue shows it. */
struct snap_waiter {
	int32_t pid, tid;
	uint32_t sem;
	uint64_t since_ns;
};

struct snap_policy {
	char path[SEG_PATH_MAX];
	uint64_t generation;
	char error[SEG_ERROR_MAX];          /* "" = none */
	int loaded;                         /* the tool read the file itself */
	int read_only;                      /* enabled = yes, or flag_file exists */
	struct policy pol;                  /* valid when loaded */
};

/* A connection record and what the reader adds to it. */
struct snap_conn {
	struct seg_conn r;
	int idx;                            /* its record index (with r.gen: identity) */
	uint64_t last_used_ns;              /* CLOCK_REALTIME of r.last_used */
};

struct snapshot {
	uint64_t taken_ns;                  /* CLOCK_REALTIME */
	uint64_t mono_ns;                   /* CLOCK_MONOTONIC, for rates */
	uint32_t version;
	struct snap_policy policy;
	struct snap_cap cap;
	struct snap_lanes lanes;            /* snap_lanes.c */
	struct seg_totals totals;           /* folded totals + live connections */
	int nprocs, nconns, nwaiters;
	struct seg_proc *procs;             /* sorted by pid (the segment's size) */
	struct snap_conn *conns;            /* sorted by pid, tid, opened */
	uint32_t max_procs, max_conns;      /* what procs and conns have room for */
	int lost;                           /* the file was truncated, removed or replaced
	                                     * since it was opened: the figures are not
	                                     * the programs' (lost_why says which) */
	char lost_why[SEG_ERROR_MAX];
	struct snap_waiter waiters[SEG_MAX_WAITERS];
};

/*
 * Map the segment that -p POLICY / -s SEGMENT (either may be NULL; then
 * $PQSHIM_POLICY, else "default") name.  Never creates one.  -s NAME is
 * this user's segment NAME, else one of its groups'.  -p POLICY is the
 * segment whose processes last published that policy's path (found among
 * the segments this user can see, so a broken policy file still finds its
 * programs), else the one the file names.  Returns 0, or prints why
 * (prefixed with `who`, "pqshim stat") and returns the exit code: 1 for a
 * segment that is missing (the message lists those that exist) or refused,
 * 2 for a name no segment can have.
 */
int snap_open(struct snap_source *src, const char *policy, const char *segment,
              const char *who);
void snap_close(struct snap_source *src);

/* The segments this user can see, in /dev/shm order; at most max.  Their
 * count (which may exceed max). */
int snap_list(struct snap_found *out, int max);
/* Find segment `name`: this user's, else its groups'.  0, or -1 (none). */
int snap_find(const char *name, struct snap_found *out);

/* Reap dead processes, then fill *s (arrays sized to the segment).  A
 * segment truncated under the tool does not kill it (seg_guard): s->lost
 * says so, and the commands exit 1 rather than show its zeros as true. */
void snap_take(struct snap_source *src, struct snapshot *s);
struct snapshot *snap_new(void);
void snap_free(struct snapshot *s);

/* Parse "-p POLICY" or "-s SEGMENT" at argv[*i]; 1 if taken (and *i moved). */
int snap_option(int argc, char **argv, int *i, const char **policy,
                const char **segment);

/* Words of SPEC.md for a record's fields. */
const char *snap_state_word(uint32_t cstate);
const char *snap_status_word(uint32_t status);
const char *snap_target_word(uint32_t target);
/* What a connection is doing: its recorded state, or "waiting" while it
 * is queued for a slot of the cap (the record's hold says so first). */
uint32_t snap_conn_state(const struct seg_conn *c);

/* A connection's hold on the active slot: none | held | waiting | shared. */
const char *snap_slot_word(const struct seg_conn *c);
int snap_holds_slot(const struct seg_conn *c);
/* Is its active slot parked (cap.h)?  Counted, yet idle: not active. */
int snap_slot_parked(const struct seg_conn *c);

/* The q-quantile (0..1) of a wait histogram in ms: the upper bound of the
 * bucket it falls in (the last, open bucket: its lower bound); 0 if empty. */
double snap_quantile_ms(const uint64_t hist[CAP_HIST_BUCKETS], double q);

/* The target the policy forbids now: TGT_PRIMARY while read-only is in
 * force, else TGT_REPLICA. */
uint32_t snap_forbidden_target(const struct snapshot *s);

/* "1.2s", "350ms", "3m", "2h": a short human duration. */
void snap_format_age(char *buf, size_t size, uint64_t ns);
/* "[####----]" for used of max, `width` cells (max 0: empty string). */
void snap_format_bar(char *buf, size_t size, uint32_t used, uint32_t max, unsigned width);

/* Copy src into dst with control characters shown as '?': program names
 * and servers come from other processes and must not drive a terminal. */
void snap_printable(char *dst, size_t size, const char *src);

/* A JSON string, always valid UTF-8: '"', '\\' and controls escaped, a
 * byte that is not part of a well-formed UTF-8 sequence (stray
 * continuation, overlong form, surrogate, beyond U+10FFFF, cut short)
 * written as \ufffd, U+FFFD REPLACEMENT CHARACTER. */
void snap_json_string(FILE *out, const char *s);
/* Nanoseconds as seconds with 3 decimals, as "%.3f" of ns / 1e9 prints
 * them, without floating point (4,000 connections' times in `stat`). */
void snap_json_seconds(FILE *out, uint64_t ns);

#endif
