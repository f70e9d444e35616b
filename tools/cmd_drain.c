/*
 * cmd_drain.c - `pqshim drain`: wait until no connection is left on a target
 * the policy forbids, for scripts that switch to read-only and must know
 * when the primary is free ("pqshim drain && run-the-migration").
 *
 * Forbidden: the primary while read-only is in force ([read_only] enabled,
 * or its flag_file exists), the replica otherwise.  The policy is read again
 * at every poll, so a switch made while drain waits counts.  Polls the
 * segment every 100 ms (a snapshot: never blocks the programs); exit 0 when
 * no live connection record has the forbidden target, 1 on timeout with
 * each holdout listed, 2 on a usage error.
 */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
	"usage: pqshim drain [-p POLICY | -s SEGMENT] [--timeout DURATION]\n"
	"Wait until no connection is left on a target the policy forbids (the primary\n"
	"while read-only is in force, else the replica): exit 0.  After DURATION\n"
	"(250ms, 5s, 2m, 1h; default the policy's drain_timeout, 2m) exit 1 and\n"
	"list the connections still there.\n"
	"  -p POLICY     the policy (and its segment; default $PQSHIM_POLICY)\n"
	"  -s SEGMENT    the segment of that name (the policy it last loaded decides)\n";

#define POLL_NS (100 * 1000000ull)

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The policy parser's own duration rules (units required, at most 7
 * days), by parsing a one-key policy: one grammar for file and flag. */
static int parse_duration(const char *text, uint64_t *ms)
{
	char ini[160];
	struct policy p;
	struct policy_errors errs;

	if (!*text || strlen(text) > 64 || strpbrk(text, "\n\r#;[]="))
		return -1;
	snprintf(ini, sizeof ini, "[read_only]\ndrain_timeout = %s\n", text);
	if (policy_parse("--timeout", ini, strlen(ini), &p, &errs) != 0)
		return -1;
	*ms = p.drain_timeout_ms;
	return 0;
}

/* A connection still on the forbidden target: one whose backend the shim
 * ended (status bad, no backend) has left the server already. */
static int holds_out(const struct seg_conn *r, uint32_t forbidden)
{
	return r->target == forbidden && r->status != CST_BAD && r->backend_pid != 0;
}

static int count_holdouts(const struct snapshot *s, uint32_t forbidden)
{
	int n = 0;
	for (int i = 0; i < s->nconns; i++)
		n += holds_out(&s->conns[i].r, forbidden);
	return n;
}

static const char *program_of(const struct snapshot *s, int32_t pid)
{
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid == pid)
			return s->procs[i].program;
	return "?";
}

static void format_clock(char *buf, size_t size, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	strftime(buf, size, "%H:%M:%S", localtime_r(&t, &tm));
}

static void list_holdouts(FILE *out, const struct snapshot *s, uint32_t forbidden)
{
	fprintf(out, "%-8s %-16s %-8s %-14s %-7s %-9s %-9s %s\n", "PID", "PROGRAM", "TID",
	        "STATE", "TARGET", "OPENED", "LAST USED", "SERVER");
	for (int i = 0; i < s->nconns; i++) {
		const struct snap_conn *c = &s->conns[i];
		if (!holds_out(&c->r, forbidden))
			continue;
		char program[SEG_PROGRAM_MAX], server[SEG_SERVER_MAX], opened[16], used[24];
		snap_printable(program, sizeof program, program_of(s, c->r.pid));
		snap_printable(server, sizeof server, c->r.server);
		format_clock(opened, sizeof opened, c->r.opened_ns);
		if (c->last_used_ns) {
			char age[16];
			snap_format_age(age, sizeof age,
			                s->taken_ns > c->last_used_ns ? s->taken_ns - c->last_used_ns : 0);
			snprintf(used, sizeof used, "%s ago", age);
		} else {
			snprintf(used, sizeof used, "never");
		}
		fprintf(out, "%-8d %-16s %-8d %-14s %-7s %-9s %-9s %s\n", c->r.pid, program, c->r.tid,
		        snap_state_word(snap_conn_state(&c->r)), snap_target_word(c->r.target), opened, used,
		        server);
	}
}

struct drain_options {
	const char *policy, *segment;
	int have_timeout;
	uint64_t timeout_ms;
};

/* -1 to go on, else the exit code. */
static int parse_options(int argc, char **argv, struct drain_options *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++) {
		const char *value = NULL;
		if (snap_option(argc, argv, &i, &o->policy, &o->segment))
			continue;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			value = argv[++i];
		else if (!strncmp(argv[i], "--timeout=", 10))
			value = argv[i] + 10;
		else {
			fprintf(stderr, "pqshim drain: unknown option %s\n%s", argv[i], usage);
			return 2;
		}
		if (parse_duration(value, &o->timeout_ms) != 0) {
			fprintf(stderr, "pqshim drain: bad --timeout \"%s\": expected a duration "
			        "like 250ms, 5s, 2m or 1h (at most 7 days)\n", value);
			return 2;
		}
		o->have_timeout = 1;
	}
	return -1;
}

/* Poll until drained or out of time.  `read_only` carries the last policy
 * that loaded across a poll where the file was being rewritten. */
static int drain(struct snap_source *src, struct snapshot *s, uint64_t timeout_ms,
                 int read_only)
{
	uint64_t start = mono_ns(), deadline = start + timeout_ms * 1000000ull;
	int said = 0;
	for (;;) {
		snap_take(src, s);
		if (s->lost) {
			fprintf(stderr, "pqshim drain: %s\n", s->lost_why);
			return 1;
		}
		(void)read_only;     /* the snapshot knows: the policy, else the segment */
		uint32_t forbidden = snap_forbidden_target(s);
		int n = count_holdouts(s, forbidden);
		uint64_t now = mono_ns();
		char took[16];
		snap_format_age(took, sizeof took, now - start);
		if (n == 0) {
			printf("pqshim drain: no connection left on the %s (%s)\n",
			       snap_target_word(forbidden), took);
			return 0;
		}
		if (now >= deadline) {
			fprintf(stderr, "pqshim drain: timed out after %s: %d connection%s still on the %s\n",
			        took, n, n == 1 ? "" : "s", snap_target_word(forbidden));
			list_holdouts(stdout, s, forbidden);
			return 1;
		}
		if (!said++)
			fprintf(stderr, "pqshim drain: waiting for %d connection%s on the %s\n", n,
			        n == 1 ? "" : "s", snap_target_word(forbidden));
		sleep_ns(deadline - now < POLL_NS ? deadline - now : POLL_NS);
	}
}

int cmd_drain(int argc, char **argv)
{
	struct drain_options o;
	int rc = parse_options(argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct snap_source src;
	rc = snap_open(&src, o.policy, o.segment, "pqshim drain");
	if (rc != 0)
		return rc;
	struct snapshot *s = snap_new();
	if (!s) {
		snap_close(&src);
		fputs("pqshim drain: out of memory\n", stderr);
		return 1;
	}
	/* Without a policy that loads there is no telling what is forbidden. */
	snap_take(&src, s);
	if (src.policy_path[0] && !s->policy.loaded) {
		fprintf(stderr, "pqshim drain: %s: the policy does not load: %s\n", src.policy_path,
		        s->policy.error[0] ? s->policy.error : "unknown error");
		rc = 2;
	} else {
		uint64_t timeout_ms = o.have_timeout ? o.timeout_ms
		                    : s->policy.loaded ? s->policy.pol.drain_timeout_ms
		                    : 2 * 60 * 1000;
		rc = drain(&src, s, timeout_ms, s->policy.read_only);
	}
	snap_free(s);
	snap_close(&src);
	return rc;
}
