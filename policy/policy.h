/*
 * policy.h - the policy file: what it says, and the one parser that reads it.
 *
 * The parser is a pure function from bytes to either a complete struct policy
 * or a list of "file:line: message" errors; it never half-applies.  The shim
 * (on load and reload) and `pqshim check` call the same code.  Nothing here
 * touches the file system except policy_load(), which adds the ownership and
 * permission checks that SPEC.md requires before parsing.
 */
#ifndef PQSHIM_POLICY_H
#define PQSHIM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

enum cap_scope     { SCOPE_PROCESS, SCOPE_HOST, SCOPE_CLUSTER };
enum nested_mode   { NESTED_SHARE, NESTED_FAIL };
enum cross_mode    { CROSS_ALLOW, CROSS_WARN, CROSS_DENY };
enum switch_mode   { SWITCH_MIGRATE, SWITCH_RESET };
enum intx_mode     { INTX_KEEP, INTX_TERMINATE };
enum onerror_mode  { ONERROR_FAIL_CLOSED, ONERROR_FAIL_OPEN };
enum fork_mode     { FORK_PROTECT, FORK_ALLOW };
enum match_kind    { MATCH_PROGRAM, MATCH_APPLICATION_NAME, MATCH_USER, MATCH_DBNAME };

#define POLICY_STR_MAX   256     /* longest string value kept (paths, conninfo) */
#define POLICY_MAX_ERRORS 16     /* errors reported per parse; the rest are counted */
#define POLICY_NAME_MAX  64      /* a lane's name, a group's name, a match pattern */
#define POLICY_MAX_LANES 16      /* [lane "NAME"] sections per policy */
#define LANE_MAX_MATCH   4       /* conditions in one lane's match = ... */
#define POLICY_FILE_MAX  (1024 * 1024) /* bytes: a larger file is refused unread */
#define POLICY_SETTLE_MS 500     /* a changed file is taken once quiet this long */

/*
 * Features the parser knows and this build does not implement yet.  A
 * policy that uses one is refused by policy_load() (so the shim and
 * `pqshim check` refuse it like any bad policy) instead of being accepted
 * and ignored.  When the feature lands, set its line to 1.
 */
#define POLICY_HAS_CLUSTER 1     /* [cap] scope = cluster (issue 13) */
#define POLICY_HAS_LANES   1     /* [lane "NAME"] sections (issue 14) */

/* One condition of a lane's `match`: KIND=PATTERN (a glob for program and
 * application_name, an exact name for user and dbname). */
struct lane_match {
	enum match_kind kind;
	char pattern[POLICY_NAME_MAX];
};

/* [lane "NAME"]: a named cap inside the global one.  Lanes are kept in
 * file order: the first whose every condition holds wins. */
struct policy_lane {
	char name[POLICY_NAME_MAX];           /* free text, as written between quotes */
	int nmatch;                           /* conditions, all must hold */
	struct lane_match match[LANE_MAX_MATCH];
	uint32_t max_active;                  /* 0 = only the global cap  [0] */
	int exclusive;                        /* [no] */
	int32_t priority;                     /* higher is served first  [0] */
	uint64_t wait_timeout_ms;             /* [the cap's]: filled in by the parser */
	unsigned line;                        /* of its [lane "NAME"] header */
};

struct policy {
	/* [cap] */
	enum cap_scope scope;                 /* [host] */
	uint32_t max_active;                  /* 0 = no cap */
	uint32_t max_connections;             /* 0 = no cap */
	uint32_t max_connections_per_thread;  /* 0 = no limit */
	uint64_t wait_timeout_ms;             /* [30s] */
	enum nested_mode nested;              /* [share] */
	char coordinator[POLICY_STR_MAX];     /* scope = cluster: conninfo, "" = none */

	/* [tracking] */
	enum cross_mode cross_thread;         /* [warn] */
	int leak_report;                      /* [yes] */
	enum fork_mode after_fork;            /* [protect] */

	/* [read_only] */
	int ro_enabled;                       /* [no] */
	char flag_file[POLICY_STR_MAX];       /* "" = none */
	char primary[POLICY_STR_MAX];         /* conninfo keywords, "" = none */
	char replica[POLICY_STR_MAX];
	enum switch_mode on_switch;           /* [migrate] */
	uint64_t drain_timeout_ms;            /* [2m] */
	enum intx_mode in_transaction;        /* [keep] */

	/* [shim] */
	char segment[POLICY_STR_MAX];         /* "" = derive from the path */
	enum onerror_mode on_error;           /* [fail-closed] */
	char log[POLICY_STR_MAX];             /* "stderr" | "syslog" | a path */
	char group[POLICY_NAME_MAX];          /* "" = owner only */
	uint32_t max_processes;               /* [512] */
	uint32_t max_tracked;                 /* [4096] */

	/* [lane "NAME"] sections, in file order */
	int nlanes;
	struct policy_lane lanes[POLICY_MAX_LANES];

	unsigned scope_line;                  /* of `scope =`, 0 when not set */
};

struct policy_errors {
	int count;                                    /* all errors found */
	char msg[POLICY_MAX_ERRORS][POLICY_STR_MAX + 128]; /* "file:line: message" */
};

/* Fill *p with every default of SPEC.md. */
void policy_defaults(struct policy *p);

/*
 * Parse len bytes of INI text.  `name` is used only in error messages.
 * Returns 0 and fills *out, or -1 and fills *errs (leaving *out untouched).
 * Pure: no I/O, no global state, safe to call from any thread.
 */
int policy_parse(const char *name, const char *text, size_t len,
                 struct policy *out, struct policy_errors *errs);

/*
 * Read and parse the file at `path`, refusing it (as an error in *errs) when
 * it is not a regular file, larger than POLICY_FILE_MAX, changed while being
 * read, group- or world-writable or owned by a user other than the caller
 * and root, or when it uses what policy_unsupported() refuses.  Never
 * blocks (a FIFO or a device is refused unread).  Returns 0 or -1 like
 * policy_parse.
 */
int policy_load(const char *path, struct policy *out, struct policy_errors *errs);

/*
 * The refusals of this build (POLICY_HAS_* above): adds "name:line: ... is
 * not supported by this build yet" to *errs for each use in *p, and returns
 * -1 if there was one, else 0.  policy_load() calls it after parsing.
 */
int policy_unsupported(const struct policy *p, const char *name,
                       struct policy_errors *errs);

/* Same inode, size, mtime, ctime, mode and owner: the file did not change. */
int policy_stat_same(const struct stat *a, const struct stat *b);

/*
 * Whether a policy file that was looked at (stat *st) should be (re)loaded
 * now: SAME as the one last applied (*applied); SETTLING, a change that has
 * not been quiet for POLICY_SETTLE_MS yet (look again in *wait_ms); or
 * SETTLED, quiet long enough to be a finished write.  *s carries what the
 * previous looks saw (zero it to start).  mono_ns is CLOCK_MONOTONIC,
 * real_ns CLOCK_REALTIME.  Pure; the reasoning is at the top of
 * policy_file.c.  After loading, stat the path again: a different answer
 * means a write came during the read, and the load must be discarded.
 */
struct policy_settle {
	struct stat seen;        /* the file at the first look since it changed */
	uint64_t seen_ns;        /* when (monotonic), 0 = nothing pending */
};
enum policy_settle_verdict { POLICY_FILE_SAME, POLICY_FILE_SETTLING, POLICY_FILE_SETTLED };
enum policy_settle_verdict policy_settle_look(struct policy_settle *s,
                                              const struct stat *applied,
                                              const struct stat *st, uint64_t mono_ns,
                                              int64_t real_ns, uint64_t *wait_ms);

/*
 * The segment name a policy uses: its [shim] segment, or one derived from
 * the policy's absolute path (stable across processes, valid as a file
 * name: [A-Za-z0-9._-]).  Writes at most `size` bytes into buf.
 */
void policy_segment_name(const struct policy *p, const char *path,
                         char *buf, size_t size);

/*
 * `path` made absolute by text (the working directory prefixed, "." and
 * ".." folded), symlinks NOT resolved: the name every process and the tool
 * use for a policy, so that a symlink re-pointed under them (a Kubernetes
 * ConfigMap's ..data) is followed, and one policy is one segment however
 * the program was started.  False if it does not fit in `size`.
 */
bool policy_absolute_path(const char *path, char *out, size_t size);

/*
 * The word SPEC.md uses for a scope ("process", "host", "cluster"), for
 * `pqshim stat` and messages.  Added by the policy module's author.
 */
const char *policy_scope_word(enum cap_scope scope);

/*
 * For a policy that does not load: the value of its `segment = NAME` line,
 * if it has one (out untouched otherwise), so that the shim and the tool
 * still agree on the segment that shows the error.  The file is read under
 * the same bounds as policy_load() (never blocks, at most POLICY_FILE_MAX).
 */
void policy_recover_segment(const char *path, char *out, size_t size);
enum onerror_mode policy_recover_on_error(const char *path);

#endif
