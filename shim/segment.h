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
 * The file lives in /dev/shm as "pqshim.<uid>.<name>", mode 0600; it is
 * created under a temporary name, initialised, then linked into place, so
 * nobody ever maps a half-initialised segment.
 */
#ifndef PQSHIM_SEGMENT_H
#define PQSHIM_SEGMENT_H

#include <stdint.h>
#include <sys/types.h>

#include "cap.h"
#include "lease_seg.h"

#define SEG_MAGIC        0x3130534d48535150ULL   /* "PQSHMS01" little-endian */
#define SEG_VERSION      4   /* 3: totals.escaped, escaped_object; 4: lease (scope = cluster) */
#define SEG_MAX_PROCS    512
#define SEG_MAX_CONNS    4096
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
	uint16_t pad0;
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
	char policy_path[SEG_PATH_MAX];
	char policy_error[SEG_ERROR_MAX];
	struct seg_cap cap;
	char escaped_object[SEG_PATH_MAX];  /* the last of them (got.c) */
	struct seg_lease lease;   /* scope = cluster (lease_seg.h) */
};

struct segment {
	struct seg_header *hdr;
	struct seg_proc *procs;
	struct seg_conn *conns;
	size_t size;
	char name[96];
};

/* The file a segment name maps to: /dev/shm/pqshim.<uid>.<name>. */
void seg_path(const char *name, char *buf, size_t size);

/* Map (creating if needed, when `create`) the named segment.  0 or -errno. */
int seg_attach(struct segment *seg, const char *name, int create);
void seg_detach(struct segment *seg);
/* Words for a seg_attach() error. */
const char *seg_strerror(int err);

/* Claim a free record; returns its index or -1 when the table is full. */
int seg_proc_claim(struct segment *seg);
int seg_conn_claim(struct segment *seg, uint32_t proc);

/* Fold a LIVE or REAPING connection's counters into the totals and free it;
 * count a close (and a leak if `leaked`) unless the record is inherited. */
void seg_conn_release(struct segment *seg, int idx, int leaked);
/* Free a process record (its connections must be released first). */
void seg_proc_release(struct segment *seg, int idx);

/* Release the records of a process that exec()ed: same pid and start
 * time, so never reaped, but none of its connections survived the exec. */
int seg_release_pid(struct segment *seg, pid_t pid);

/* Reap the records of processes that are gone.  Returns how many. */
int seg_reap(struct segment *seg);

/* Is the process pid with that starttime still running? */
int seg_process_alive(pid_t pid, uint64_t starttime);
/* Field 22 of /proc/pid/stat, or 0. */
uint64_t seg_starttime(pid_t pid);

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
