/*
 * segment.h - the shared segment: one versioned, documented layout in shared
 * memory that every process of a policy and the tool map.
 *
 * Layout: a header, then SEG_MAX_PROCS process records, then SEG_MAX_CONNS
 * connection records.  Fixed-size records, no pointers, only integers and
 * NUL-terminated strings, so that processes of any build read it alike.
 *
 * Invariants:
 *  - a record is owned by the process whose pid/starttime it carries while
 *    its `state` is SLOT_LIVE; only that process writes it, except the
 *    reaper, which takes a dead owner's records with a CAS LIVE -> REAPING;
 *  - a record's counters are folded into the header's totals exactly once,
 *    by whoever moves it out of SLOT_LIVE (owner on close, reaper on death),
 *    so totals survive the processes that made them;
 *  - `gen` changes every time a record is claimed: a reader that sees the
 *    same gen before and after copying a LIVE record has a consistent copy.
 *
 * Where it lives and who may use it: /dev/shm/pqshim.<uid>.<name>, mode
 * 0600, for one user; with [shim] group, /dev/shm/pqshim.g<gid>.<name>,
 * mode 0660, that group, for all its members.  It is created under a
 * temporary name, given its group and mode, initialised, then linked into
 * place, so nobody ever maps a half-initialised or wrongly owned segment.
 * Every attach verifies, on the open file (O_NOFOLLOW, fstat), that it is
 * a regular file with exactly that owner (or a member of the group), group,
 * mode, size and layout; anything else (another user's file squatting the
 * name, a symlink, a FIFO, another version) is refused with a sentence
 * naming the file and what was found.
 *
 * The table sizes come from the policy ([shim] max_processes, max_tracked)
 * when the segment is created, and from the header afterwards: a process
 * uses the sizes of the segment it finds (struct segment keeps its own
 * copy, checked against the file's size, so a header scribbled over later
 * cannot send anyone out of bounds).
 */
#ifndef PQSHIM_SEGMENT_H
#define PQSHIM_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cap.h"
#include "lease_seg.h"

#define SEG_MAGIC        0x3130534d48535150ULL   /* "PQSHMS01" little-endian */
#define SEG_VERSION      14  /* 3: totals.escaped, escaped_object; 4: lease (scope = cluster);
                              * 5: sizes from the policy, group segments;
                              * 6: lanes (seg_cap.lanes, seg_conn.lane);
                              * 7: robust (the word's audit epoch, RELEASING_COUNTED,
                              * CANCELLED waiters, seg_cap.audit_due, CONN_ORPHAN);
                              * 8: the lease's standby (seg_lease.standby...);
                              * 9: lane words (seg_lane.word, SEM_EXCL, lane waiters
                               * in the word's waiting); 10: seg_proc.exec_seq;
                               * 11: lanes across hosts (seg_lease.gate_*, seg_lanes.gate);
                               * 12: seg_lane_waiter.granted_ms (a lane grant revoked);
                               * 13: parked slots (HOLD_PARKED, SEM_SWEPT; cap.h);
                               * 14: seg_cap.spin (cap_spin.h), waiters_hi, sweep_due */
#define SEG_PROCS_DEFAULT 512    /* [shim] max_processes */
#define SEG_CONNS_DEFAULT 4096   /* [shim] max_tracked */
#define SEG_PROCS_LIMIT  65536   /* the largest tables a segment may have */
#define SEG_CONNS_LIMIT  1048576  /* as the policy allows */
#define SEG_NAME_MAX     64      /* a segment's name: [A-Za-z0-9._-]{1,64} */
#define SEG_PROGRAM_MAX  32
#define SEG_SERVER_MAX   192
#define SEG_APPNAME_MAX  64
#define SEG_THREADS_SEEN 4       /* distinct threads remembered per connection */
#define SEG_PATH_MAX     256
#define SEG_ERROR_MAX    512

enum slot_state { SLOT_FREE = 0, SLOT_CLAIMED = 1, SLOT_LIVE = 2, SLOT_REAPING = 3 };

/* What a connection is doing, as SPEC.md names it. */
enum conn_state { CS_CONNECTING = 0, CS_IDLE, CS_ACTIVE, CS_IN_TRANSACTION, CS_WAITING };
/* Whether the connection to the server stands. */
enum conn_status { CST_CONNECTING = 0, CST_OK, CST_BAD };
enum conn_target { TGT_DIRECT = 0, TGT_PRIMARY, TGT_REPLICA };

#define CONN_INHERITED 0x1u      /* opened by a parent before fork() */
#define CONN_ORPHAN    0x2u      /* its thread exited inside a transaction: the
                                  * slot stays held until that transaction ends */

/* Counters that outlive processes.  Updated with atomic adds. */
struct seg_totals {
	uint64_t queries;
	uint64_t xacts;
	uint64_t connects;
	uint64_t closes;
	uint64_t cross_thread_uses;
	uint64_t refused;
	uint64_t redirects;
	uint64_t migrations;
	uint64_t leaked;          /* connections still open when their process ended */
	uint64_t untracked;       /* connections not recorded: the table was full */
	uint64_t escaped;         /* objects found calling a libpq of their own (got.c) */
};

/* Both record kinds start with the state word and the generation:
 * seg_proc_read/seg_conn_read rely on it. */
struct seg_proc {
	uint32_t state;           /* enum slot_state (atomic) */
	uint32_t gen;             /* bumped on every claim (atomic) */
	int32_t pid;
	int32_t ppid;
	uint64_t starttime;       /* /proc/pid/stat field 22: pid + starttime = identity */
	uint32_t uid;
	uint32_t threads;         /* live threads that have used libpq (atomic) */
	uint32_t connections;     /* open connections (atomic) */
	uint32_t inherited;       /* connections inherited across fork() */
	uint64_t started_ns;      /* CLOCK_REALTIME */
	uint64_t waits;           /* slot acquisitions that waited (atomic) */
	uint64_t timeouts;        /* ... and gave up */
	uint64_t wait_ns;         /* time spent waiting */
	char program[SEG_PROGRAM_MAX];
	uint32_t exec_seq;        /* odd while a thread of it is in exec() (atomic) */
	uint32_t spare;
};

struct seg_conn {
	uint32_t state;           /* enum slot_state (atomic) */
	uint32_t gen;             /* bumped on every claim (atomic) */
	uint32_t proc;            /* index of the owning seg_proc */
	int32_t pid;
	int32_t tid;              /* the thread that opened it */
	int32_t last_tid;         /* the thread that used it last */
	uint32_t cstate;          /* enum conn_state */
	uint32_t status;          /* enum conn_status */
	uint32_t target;          /* enum conn_target */
	uint32_t flags;           /* CONN_* */
	uint32_t nthreads;        /* distinct threads seen (may exceed SEG_THREADS_SEEN) */
	int32_t threads[SEG_THREADS_SEEN];
	uint32_t backend_pid;     /* the server process, once connected */
	uint8_t hold[CAP_SEMS];   /* enum hold_state per semaphore (atomic) */
	uint8_t lane;             /* the connection's lane (seg_cap.lanes; 0 = default) */
	uint8_t lane_held;        /* lane + 1 its active slot counts in, | LANE_HELD_EXCL;
	                           * 0 = none (atomic; cap_lanes.h) */
	int32_t holder_tid;       /* the thread that acquired the active slot */
	uint64_t queries;
	uint64_t xacts;
	uint64_t cross_thread_uses;
	uint64_t opened_ns;       /* CLOCK_REALTIME */
	uint64_t last_used;       /* clock_ticks(): see seg_ticks_to_ns() */
	char server[SEG_SERVER_MAX];
	char appname[SEG_APPNAME_MAX];
};

struct seg_header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	uint32_t proc_size, conn_size;
	uint32_t max_procs, max_conns;
	uint64_t created_ns;
	struct seg_totals totals;
	uint64_t clock_ticks0;    /* clock_ticks() and CLOCK_MONOTONIC at creation: */
	uint64_t clock_mono0;     /* the reference that turns ticks into time */
	/* The policy as the last process to load it saw it. */
	uint64_t policy_generation;
	uint32_t policy_lock;     /* tiny spin flag for the two strings below */
	uint32_t read_only;       /* 1 while read-only is in force (as last seen) */
	uint64_t switch_ns;       /* CLOCK_REALTIME of the last read-only switch */
	uint64_t drained_ns;      /* ... and when no connection was left on the
	                           * target it forbade (0: not yet) */
	uint64_t last_used_ns;    /* CLOCK_REALTIME of the last process or
	                           * connection claimed or released (atomic) */
	uint32_t owner_uid;       /* who created it */
	uint32_t group_gid;       /* [shim] group, or SEG_NO_GROUP */
	char policy_path[SEG_PATH_MAX];
	char policy_error[SEG_ERROR_MAX];
	struct seg_cap cap;
	char escaped_object[SEG_PATH_MAX];  /* the last of them (got.c) */
	struct seg_lease lease;   /* scope = cluster (lease_seg.h) */
};

#define SEG_NO_GROUP 0xffffffffu

struct segment {
	struct seg_header *hdr;
	struct seg_proc *procs;
	struct seg_conn *conns;
	size_t size;
	uint32_t max_procs, max_conns;   /* as mapped: the bounds of procs[], conns[] */
	dev_t dev;                       /* the file mapped */
	ino_t ino;
	char name[SEG_NAME_MAX + 1];
	char path[128];
};

/* What a process asks for: the policy's [shim] keys. */
struct seg_want {
	const char *name;                /* [shim] segment (or derived) */
	const char *group;               /* [shim] group; NULL or "": this user only */
	uint32_t max_procs, max_conns;   /* [shim] max_processes, max_tracked: for a new one */
	int create;                      /* create it when missing (the shim; never the tool) */
};

/* What seg_attach found.  Only SEG_OK and SEG_OTHER_SIZE leave it mapped. */
enum seg_verdict {
	SEG_OK = 0,
	SEG_OTHER_SIZE,    /* mapped, but made with other table sizes (why says) */
	SEG_MISSING,       /* no such segment (and not asked to create it) */
	SEG_REFUSED,       /* not one we may trust: owner, group, mode, kind, layout */
	SEG_FAILED,        /* could not create or map it (why says the error) */
	SEG_DAMAGED,       /* seg_check: truncated or overwritten under us */
};

/* Is this a name a segment may have ([A-Za-z0-9._-]{1,64}, not . or ..)? */
int seg_name_valid(const char *name);

/* The file of a segment: /dev/shm/pqshim.<uid>.<name>, or with a group
 * (gid != SEG_NO_GROUP) /dev/shm/pqshim.g<gid>.<name>. */
void seg_path(const char *name, uint32_t gid, char *buf, size_t size);

/* Map the segment `want` names, creating it when missing if want->create,
 * and verify it.  Anything but SEG_OK leaves a sentence in why (the file,
 * what was found, what was expected); SEG_OTHER_SIZE is usable as it is. */
enum seg_verdict seg_attach(struct segment *seg, const struct seg_want *want,
                            char *why, size_t size);
/* Map the segment file at `path` (the tool: one it found by name), owned
 * by this user alone, or by `gid` (SEG_NO_GROUP: this user's). */
enum seg_verdict seg_attach_path(struct segment *seg, const char *path, uint32_t gid,
                                 char *why, size_t size);
void seg_detach(struct segment *seg);

/* Is the mapped segment still the file it was, whole?  SEG_OK; SEG_DAMAGED
 * when it was truncated (its mapping is replaced by private memory first,
 * so nothing faults) or a fault was caught (seg_guard); SEG_MISSING when
 * the file was removed or replaced (the mapping stays usable, but
 * processes started since use another segment).  why says which. */
enum seg_verdict seg_check(struct segment *seg, char *why, size_t size);

/* Catch SIGBUS inside this segment's mapping (a file truncated under us):
 * the mapping becomes private zeroed memory whose cap is full (every
 * semaphore at max 1, count 1: a thread already inside libpq's call
 * finishes, nobody new is admitted), seg_check reports SEG_DAMAGED,
 * and on_damage (async-signal-safe!) runs.  Faults elsewhere go to the
 * program's own handler, or its default action.  One segment per process. */
void seg_guard(struct segment *seg, void (*on_damage)(void));

/* "segment NAME has no free process record (max_processes = 512): raise
 * [shim] max_processes; ..." (procs: 1) or the same for max_tracked. */
void seg_full_message(const struct segment *seg, int procs, char *buf, size_t size);

/* Claim a free record; returns its index or -1 when the table is full. */
int seg_proc_claim(struct segment *seg);
int seg_conn_claim(struct segment *seg, uint32_t proc);

/* Fold a LIVE or REAPING connection's counters into the totals and free it;
 * count a close (and a leak if `leaked`) unless the record is inherited. */
void seg_conn_release(struct segment *seg, int idx, int leaked);
/* Free a process record (its connections must be released first). */
void seg_proc_release(struct segment *seg, int idx);

/* Release the records of a process that exec()ed: same pid and start
 * time, so never reaped, but none of its connections survived the exec.
 * Returns how many; the cap's counts are the caller's to rebuild
 * (cap_release_pid). */
int seg_release_pid(struct segment *seg, pid_t pid);

/* Is a process recorded LIVE and alive (its pid with its start time)
 * besides the record `except` (-1: none), of user `uid` unless
 * uid == (uid_t)-1?  Stops at the first one found. */
int seg_proc_any_live(const struct segment *seg, int except, uid_t uid);

/* Reap the records of processes that are gone.  Returns how many; the
 * cap's counts are the caller's to rebuild (cap_reap: the segment never
 * calls the cap). */
int seg_reap(struct segment *seg);

/*
 * exec() replaces a process's image but keeps its pid and start time: the
 * record must die with the image.  Around its exec, the process holds an
 * open-file-description lock (close-on-exec) on a byte of the segment's
 * file that is its record's, and makes the record's exec_seq odd; a
 * successful exec drops the lock with the old image's files.  A record
 * whose exec_seq is odd and whose lock nobody holds is of an image that is
 * gone (seg_proc_alive).  begin returns the lock's fd (or -1: nothing
 * marked), end (after a failed exec) takes the mark back, then the lock.
 */
int seg_proc_exec_begin(struct segment *seg, int idx);
void seg_proc_exec_end(struct segment *seg, int idx, int fd);
/* Is the process of record idx alive, in the image that wrote it? */
int seg_proc_alive(const struct segment *seg, uint32_t idx);
/* Is process pid (started at starttime) alive in an image that holds a
 * live record here: not gone, and not exec()ed since (its pid lives on)? */
int seg_pid_alive(const struct segment *seg, pid_t pid, uint64_t starttime);

/* Consistent copies for readers (the tool).  0 when the record is LIVE. */
int seg_proc_read(const struct segment *seg, int idx, struct seg_proc *out);
int seg_conn_read(const struct segment *seg, int idx, struct seg_conn *out);

/* Wall-clock nanoseconds (CLOCK_REALTIME) of a clock_ticks() value. */
uint64_t seg_ticks_to_ns(const struct seg_header *h, uint64_t ticks);

/* Atomic add to a 64-bit counter in the segment. */
static inline void seg_add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

#endif
