/*
 * cmd_stat.c - `pqshim stat`: one snapshot of a segment (snapshot.c), shown
 * as a table for people, as JSON (SPEC.md's field names, exactly) for
 * programs, or in the Prometheus text exposition format 0.0.4 for scrapers.
 *
 * Reading never blocks the processes that write, and dead processes are
 * reaped first, so what is shown is what is alive.  Nothing here shows a
 * password: `server` holds only host, port, dbname and user.
 */
#include "snapshot.h"
#include "cluster.h"
#include "stat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: pqshim stat [-p POLICY | -s SEGMENT] [--json | --prometheus]\n"
	"Show the cap, the policy, every process and every connection of a segment.\n"
	"  -p POLICY     the segment of this policy file (default $PQSHIM_POLICY)\n"
	"  -s SEGMENT    the segment of that name (/dev/shm/pqshim.<uid>.SEGMENT)\n"
	"  --json        one JSON object (fields in pqshim(1) and the README)\n"
	"  --prometheus  Prometheus text format 0.0.4, metrics named pqshim_*\n";

enum format { FMT_TABLE, FMT_JSON, FMT_PROMETHEUS };

static const char *const sem_names[CAP_SEMS] = { "active", "connections" };

/* ---- JSON -------------------------------------------------------------- */

static void json_string_or_null(FILE *out, const char *s)
{
	if (s[0])
		snap_json_string(out, s);
	else
		fputs("null", out);
}

static void json_policy(FILE *out, const struct snapshot *s)
{
	const struct snap_policy *p = &s->policy;
	fputs("  \"policy\": {\"path\": ", out);
	snap_json_string(out, p->path);
	fprintf(out, ", \"generation\": %llu, \"read_only\": %s, \"error\": ",
	        (unsigned long long)p->generation, p->read_only ? "true" : "false");
	json_string_or_null(out, p->error);
	fputs("},\n", out);
}

static void json_sem(FILE *out, const struct snap_sem *sem)
{
	fprintf(out, "{\"max\": %u, \"held\": %u, \"waiting\": %u, \"acquired\": %llu, "
	        "\"waits\": %llu, \"timeouts\": %llu, \"refused\": %llu, \"wait_ms_sum\": %.3f}",
	        sem->max, sem->count, sem->waiting, (unsigned long long)sem->acquired,
	        (unsigned long long)sem->waits, (unsigned long long)sem->timeouts,
	        (unsigned long long)sem->refused, sem->wait_ns_sum / 1e6);
}

static void json_cap(FILE *out, const struct snapshot *s)
{
	const struct snap_cap *c = &s->cap;
	fputs("  \"cap\": {\"scope\": ", out);
	snap_json_string(out, c->scope);
	fprintf(out, ", \"max_active\": %u, \"active\": %u, \"waiting\": %u, "
	        "\"max_connections\": %u, \"connections\": %u, \"waits\": %llu, "
	        "\"timeouts\": %llu, \"wait_ms_p50\": %.3f, \"wait_ms_p99\": %.3f,\n"
	        "          \"refused\": %llu, \"acquired\": %llu, \"wait_ms_sum\": %.3f,\n",
	        c->max_active, c->active, c->waiting, c->max_connections, c->connections,
	        (unsigned long long)c->waits, (unsigned long long)c->timeouts,
	        c->wait_ms_p50, c->wait_ms_p99, (unsigned long long)c->refused,
	        (unsigned long long)c->acquired, c->wait_ns_sum / 1e6);
	fputs("          \"semaphores\": {", out);
	for (unsigned i = 0; i < CAP_SEMS; i++) {
		fprintf(out, "%s\"%s\": ", i ? ", " : "", sem_names[i]);
		json_sem(out, &c->sems[i]);
	}
	/* Each bucket counts the waits shorter than le_ms and not shorter than
	 * the previous bucket's; the last (le_ms null) everything longer. */
	fputs("},\n          \"histogram\": [", out);
	for (unsigned b = 0; b < CAP_HIST_BUCKETS; b++) {
		if (b < CAP_HIST_BUCKETS - 1)
			fprintf(out, "%s{\"le_ms\": %.3f, ", b ? ", " : "", cap_bucket_le_ms(b));
		else
			fputs(", {\"le_ms\": null, ", out);
		fprintf(out, "\"count\": %llu}", (unsigned long long)c->hist[b]);
	}
	fputs("],\n          \"queue\": [", out);
	for (int i = 0; i < s->nwaiters; i++) {
		const struct snap_waiter *w = &s->waiters[i];
		double ms = s->taken_ns > w->since_ns ? (s->taken_ns - w->since_ns) / 1e6 : 0;
		fprintf(out, "%s{\"pid\": %d, \"tid\": %d, \"semaphore\": \"%s\", \"waiting_ms\": %.3f}",
		        i ? ", " : "", w->pid, w->tid,
		        w->sem < CAP_SEMS ? sem_names[w->sem] : "unknown", ms);
	}
	fputs("]},\n", out);
}

static void json_processes(FILE *out, const struct snapshot *s)
{
	fputs("  \"processes\": [", out);
	for (int i = 0; i < s->nprocs; i++) {
		const struct seg_proc *p = &s->procs[i];
		fprintf(out, "%s\n    {\"pid\": %d, \"ppid\": %d, \"program\": ", i ? "," : "",
		        p->pid, p->ppid);
		snap_json_string(out, p->program);
		fprintf(out, ", \"threads\": %u, \"connections\": %u, \"inherited_connections\": %u, "
		        "\"started\": %.3f, \"waits\": %llu, \"timeouts\": %llu, \"wait_ms\": %.3f}",
		        p->threads, p->connections, p->inherited, p->started_ns / 1e9,
		        (unsigned long long)p->waits, (unsigned long long)p->timeouts,
		        p->wait_ns / 1e6);
	}
	fputs(s->nprocs ? "\n  ],\n" : "],\n", out);
}

static void json_connection(FILE *out, const struct snapshot *s, const struct snap_conn *sc,
                            const char *lane)
{
	const struct seg_conn *c = &sc->r;
	fprintf(out, "{\"pid\": %d, \"tid\": %d, \"threads\": [", c->pid, c->tid);
	unsigned n = c->nthreads < SEG_THREADS_SEEN ? c->nthreads : SEG_THREADS_SEEN;
	for (unsigned k = 0; k < n; k++)
		fprintf(out, "%s%d", k ? ", " : "", c->threads[k]);
	fprintf(out, "], \"threads_seen\": %u, \"target\": \"%s\", \"state\": \"%s\", "
	        "\"status\": \"%s\", \"slot\": \"%s\", \"queries\": %llu, \"xacts\": %llu, "
	        "\"cross_thread_uses\": %llu, \"inherited\": %s, \"backend_pid\": %u, "
	        "\"opened\": ",
	        c->nthreads, snap_target_word(c->target), snap_state_word(snap_conn_state(c)),
	        snap_status_word(c->status), snap_slot_word(c),
	        (unsigned long long)c->queries, (unsigned long long)c->xacts,
	        (unsigned long long)c->cross_thread_uses,
	        (c->flags & CONN_INHERITED) ? "true" : "false", c->backend_pid);
	snap_json_seconds(out, c->opened_ns);
	fputs(", \"last_used\": ", out);
	snap_json_seconds(out, sc->last_used_ns);
	fputs(", \"server\": ", out);
	snap_json_string(out, c->server);
	fputs(", \"application_name\": ", out);
	snap_json_string(out, c->appname);
	fputs(", \"lane\": ", out);
	snap_json_string(out, lane);
	/* An orphan: its thread exited inside a transaction, which holds the
	 * slot still; its age since its last statement. */
	if (c->flags & CONN_ORPHAN)
		fprintf(out, ", \"orphan\": true, \"orphan_s\": %.3f",
		        s->taken_ns > sc->last_used_ns ? (s->taken_ns - sc->last_used_ns) / 1e9 : 0.0);
	else
		fputs(", \"orphan\": false, \"orphan_s\": null", out);
	fputc('}', out);
}

static void json_connections(FILE *out, const struct snapshot *s)
{
	fputs("  \"connections\": [", out);
	for (int i = 0; i < s->nconns; i++) {
		fputs(i ? ",\n    " : "\n    ", out);
		json_connection(out, s, &s->conns[i], snap_lane_name(s, &s->conns[i].r));
	}
	fputs(s->nconns ? "\n  ],\n" : "],\n", out);
}

/* The last object found calling a libpq of its own (the segment's header:
 * snapshots do not copy it), "" if none. */
static char escaped_object[SEG_PATH_MAX];

static void json_totals(FILE *out, const struct seg_totals *t)
{
	fprintf(out, "  \"totals\": {\"queries\": %llu, \"xacts\": %llu, \"connects\": %llu, "
	        "\"closes\": %llu, \"redirects\": %llu, \"migrations\": %llu, "
	        "\"cross_thread_uses\": %llu, \"refused\": %llu, \"leaked\": %llu, "
	        "\"untracked\": %llu, \"escaped\": %llu, \"escaped_object\": ",
	        (unsigned long long)t->queries, (unsigned long long)t->xacts,
	        (unsigned long long)t->connects, (unsigned long long)t->closes,
	        (unsigned long long)t->redirects, (unsigned long long)t->migrations,
	        (unsigned long long)t->cross_thread_uses, (unsigned long long)t->refused,
	        (unsigned long long)t->leaked, (unsigned long long)t->untracked,
	        (unsigned long long)t->escaped);
	if (escaped_object[0])
		snap_json_string(out, escaped_object);
	else
		fputs("null", out);
	fputs("}\n", out);
}

void stat_write_json(FILE *out, const struct snapshot *s, const char *segname)
{
	fputs("{\n  \"segment\": {\"name\": ", out);
	snap_json_string(out, segname);
	fprintf(out, ", \"version\": %u},\n", s->version);
	json_policy(out, s);
	json_cap(out, s);
	cluster_json(out, s);
	snap_json_lanes(out, s);
	json_processes(out, s);
	json_connections(out, s);
	json_totals(out, &s->totals);
	fputs("}\n", out);
}

/* ---- Prometheus -------------------------------------------------------- */

static void prom_head(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values escape backslash, double quote and newline (format 0.0.4). */
static void prom_label_value(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '"')
			fputs("\\\"", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
	fputc('"', out);
}

static void prom_u64(FILE *out, const char *name, const char *type, const char *help,
                     uint64_t v)
{
	prom_head(out, name, type, help);
	fprintf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* A bucket bound in seconds: 2^b µs has at most six decimals. */
static void prom_le(char *buf, size_t size, unsigned b)
{
	snprintf(buf, size, "%.6f", (double)(1ull << b) / 1e6);
	char *end = buf + strlen(buf) - 1;
	while (end > buf && *end == '0')
		*end-- = '\0';
	if (*end == '.')
		*end = '\0';
}

/* One series of the wait histogram; `labels` are its own (`lane="..."`),
 * written before le.  Buckets are cumulative, +Inf equal to _count. */
static void prom_histogram_series(FILE *out, const char *name, const char *labels,
                                  const uint64_t hist[CAP_HIST_BUCKETS], uint64_t sum_ns)
{
	uint64_t cum = 0;
	for (unsigned b = 0; b < CAP_HIST_BUCKETS - 1; b++) {
		char le[32];
		cum += hist[b];
		prom_le(le, sizeof le, b);
		fprintf(out, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, le, (unsigned long long)cum);
	}
	cum += hist[CAP_HIST_BUCKETS - 1];
	fprintf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
	fprintf(out, "%s_sum{%s} %.9f\n", name, labels, sum_ns / 1e9);
	fprintf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}

static void prom_histogram(FILE *out, const struct snapshot *s)
{
	const char *name = "pqshim_wait_seconds";
	prom_head(out, name, "histogram", "Time spent waiting for a slot of the cap, per lane.");
	/* One series per lane, labelled lane="NAME" (snap_lanes.c): work that
	 * no lane matches is in the default lane, without lanes all of it. */
	for (int i = 0; i < s->lanes.n; i++) {
		const struct snap_lane *l = &s->lanes.lane[i];
		char label[SNAP_LANE_LABEL_MAX];
		snap_lane_label(label, sizeof label, l->name);
		prom_histogram_series(out, name, label, l->hist, l->wait_ns_sum);
	}
}

static void prom_cap(FILE *out, const struct snapshot *s)
{
	const struct snap_cap *c = &s->cap;
	prom_u64(out, "pqshim_max_active", "gauge", "Active transactions allowed at once (0: no cap).",
	         c->max_active);
	prom_u64(out, "pqshim_active", "gauge", "Slots of the cap held now.", c->active);
	prom_u64(out, "pqshim_waiting", "gauge", "Callers waiting for a slot now.", c->waiting);
	prom_u64(out, "pqshim_max_connections", "gauge", "Open connections allowed at once (0: no cap).",
	         c->max_connections);
	prom_u64(out, "pqshim_connections", "gauge", "Open connections now.", c->connections);
	prom_u64(out, "pqshim_processes", "gauge", "Live processes in the segment.",
	         (uint64_t)s->nprocs);
	prom_u64(out, "pqshim_slots_acquired_total", "counter", "Slots granted, with or without waiting.",
	         c->acquired);
	prom_u64(out, "pqshim_waits_total", "counter", "Slot acquisitions that had to wait.", c->waits);
	prom_u64(out, "pqshim_wait_timeouts_total", "counter", "Waits that gave up at wait_timeout.",
	         c->timeouts);
	prom_u64(out, "pqshim_cap_refused_total", "counter", "Slots refused at once (nested = fail).",
	         c->refused);
	prom_histogram(out, s);
}

static void prom_policy(FILE *out, const struct snapshot *s)
{
	prom_head(out, "pqshim_policy_info", "gauge", "The policy in force (always 1).");
	fputs("pqshim_policy_info{path=", out);
	prom_label_value(out, s->policy.path);
	fputs("} 1\n", out);
	prom_u64(out, "pqshim_policy_generation", "gauge", "Times the policy was loaded.",
	         s->policy.generation);
	prom_u64(out, "pqshim_policy_read_only", "gauge", "1 while read-only is in force.",
	         (uint64_t)s->policy.read_only);
	prom_u64(out, "pqshim_policy_error", "gauge", "1 when the policy did not load.",
	         s->policy.error[0] != '\0');
}

static void prom_totals(FILE *out, const struct seg_totals *t)
{
	prom_u64(out, "pqshim_queries_total", "counter", "Statements sent.", t->queries);
	prom_u64(out, "pqshim_xacts_total", "counter", "Transactions completed.", t->xacts);
	prom_u64(out, "pqshim_connects_total", "counter", "Connections opened.", t->connects);
	prom_u64(out, "pqshim_closes_total", "counter", "Connections closed.", t->closes);
	prom_u64(out, "pqshim_redirects_total", "counter", "Connections redirected to the replica.",
	         t->redirects);
	prom_u64(out, "pqshim_migrations_total", "counter", "Connections moved to a new target.",
	         t->migrations);
	prom_u64(out, "pqshim_cross_thread_uses_total", "counter",
	         "Statements sent by a thread other than the connection's opener.",
	         t->cross_thread_uses);
	prom_u64(out, "pqshim_refused_total", "counter", "Calls refused by the shim.", t->refused);
	prom_u64(out, "pqshim_leaked_total", "counter", "Connections never closed by their program.",
	         t->leaked);
	prom_u64(out, "pqshim_untracked_total", "counter",
	         "Connections not recorded: the segment's table was full.", t->untracked);
}

static void prom_proc_labels(FILE *out, const char *name, const struct seg_proc *p)
{
	fprintf(out, "%s{pid=\"%d\",program=", name, p->pid);
	prom_label_value(out, p->program);
	fputs("} ", out);
}

static void prom_processes(FILE *out, const struct snapshot *s)
{
	prom_head(out, "pqshim_process_threads", "gauge", "Live threads of a process that used libpq.");
	for (int i = 0; i < s->nprocs; i++) {
		prom_proc_labels(out, "pqshim_process_threads", &s->procs[i]);
		fprintf(out, "%u\n", s->procs[i].threads);
	}
	prom_head(out, "pqshim_process_connections", "gauge", "Open connections of a process.");
	for (int i = 0; i < s->nprocs; i++) {
		prom_proc_labels(out, "pqshim_process_connections", &s->procs[i]);
		fprintf(out, "%u\n", s->procs[i].connections);
	}
	prom_head(out, "pqshim_process_waits", "gauge", "Slot acquisitions of a process that waited.");
	for (int i = 0; i < s->nprocs; i++) {
		prom_proc_labels(out, "pqshim_process_waits", &s->procs[i]);
		fprintf(out, "%llu\n", (unsigned long long)s->procs[i].waits);
	}
}

static void prom_connection_states(FILE *out, const struct snapshot *s)
{
	static const char *const targets[] = { "direct", "primary", "replica" };
	static const char *const states[] = { "connecting", "idle", "active", "in_transaction", "waiting" };
	unsigned n[3][5] = { { 0 } };
	for (int i = 0; i < s->nconns; i++) {
		const struct seg_conn *c = &s->conns[i].r;
		if (c->target < 3 && c->cstate < 5)
			n[c->target][c->cstate]++;
	}
	prom_head(out, "pqshim_connections_by_state", "gauge", "Open connections by target and state.");
	for (unsigned t = 0; t < 3; t++)
		for (unsigned k = 0; k < 5; k++)
			fprintf(out, "pqshim_connections_by_state{target=\"%s\",state=\"%s\"} %u\n",
			        targets[t], states[k], n[t][k]);
}

void stat_write_prometheus(FILE *out, const struct snapshot *s)
{
	prom_policy(out, s);
	prom_cap(out, s);
	cluster_prometheus(out, s);
	snap_prom_lanes(out, s);
	prom_connection_states(out, s);
	prom_totals(out, &s->totals);
	prom_processes(out, s);
}

/* ---- the table --------------------------------------------------------- */

static void table_cap(FILE *out, const struct snapshot *s)
{
	const struct snap_cap *c = &s->cap;
	char bar[40];
	fprintf(out, "cap %s  active %u", c->scope, c->active);
	if (c->max_active) {
		snap_format_bar(bar, sizeof bar, c->active, c->max_active, 20);
		fprintf(out, "/%u %s", c->max_active, bar);
	} else {
		fputs("/- (no cap)", out);
	}
	fprintf(out, "  waiting %u  connections %u", c->waiting, c->connections);
	if (c->max_connections)
		fprintf(out, "/%u", c->max_connections);
	fprintf(out, "  waits %llu  timeouts %llu  wait p50 %.3fms p99 %.3fms\n",
	        (unsigned long long)c->waits, (unsigned long long)c->timeouts,
	        c->wait_ms_p50, c->wait_ms_p99);
}

static void table_policy(FILE *out, const struct snapshot *s, const char *segname)
{
	const struct snap_policy *p = &s->policy;
	char path[SEG_PATH_MAX], err[SEG_ERROR_MAX];
	snap_printable(path, sizeof path, p->path[0] ? p->path : "(none)");
	snap_printable(err, sizeof err, p->error);
	fprintf(out, "policy %s  generation %llu  %s  segment %s\n", path,
	        (unsigned long long)p->generation, p->read_only ? "READ-ONLY" : "read-write",
	        segname);
	if (err[0])
		fprintf(out, "policy error: %s\n", err);
}

static void table_totals(FILE *out, const struct seg_totals *t)
{
	fprintf(out, "totals queries %llu  xacts %llu  connects %llu  closes %llu  refused %llu  "
	        "cross-thread %llu  leaked %llu\n",
	        (unsigned long long)t->queries, (unsigned long long)t->xacts,
	        (unsigned long long)t->connects, (unsigned long long)t->closes,
	        (unsigned long long)t->refused, (unsigned long long)t->cross_thread_uses,
	        (unsigned long long)t->leaked);
	if (t->escaped) {
		char obj[SEG_PATH_MAX];
		snap_printable(obj, sizeof obj, escaped_object);
		fprintf(out, "escaped %llu: objects calling their own libpq, not covered (last: %s)\n",
		        (unsigned long long)t->escaped, obj);
	}
}

static void table_connection(FILE *out, const struct snapshot *s, const struct snap_conn *sc)
{
	const struct seg_conn *c = &sc->r;
	char idle[16], marks[64] = "", server[SEG_SERVER_MAX];
	uint64_t used = sc->last_used_ns ? sc->last_used_ns : c->opened_ns;
	snap_format_age(idle, sizeof idle, s->taken_ns > used ? s->taken_ns - used : 0);
	snap_printable(server, sizeof server, c->server);
	if (c->nthreads > 1)
		snprintf(marks, sizeof marks, "  [used by %u threads]", c->nthreads);
	if (c->flags & CONN_INHERITED)
		strncat(marks, "  [inherited]", sizeof marks - strlen(marks) - 1);
	if (c->flags & CONN_ORPHAN)
		strncat(marks, "  [orphan]", sizeof marks - strlen(marks) - 1);
	char lane[CAP_LANE_NAME];
	snap_printable(lane, sizeof lane, snap_lane_name(s, c));
	fprintf(out, "    %-8d %-14s %-7s %-7s %-10s %9llu %8llu %8s  %s%s\n", c->tid,
	        snap_state_word(snap_conn_state(c)), snap_target_word(c->target), snap_slot_word(c),
	        lane,
	        (unsigned long long)c->queries, (unsigned long long)c->xacts, idle,
	        server, marks);
}

/* Processes, each followed by its connections (indented); the two
 * column headers once, at the top. */
static void table_processes(FILE *out, const struct snapshot *s)
{
	if (!s->nprocs) {
		fputs("\nno process\n", out);
		return;
	}
	fprintf(out, "\n%-8s %-16s %7s %5s %6s\n", "PID", "PROGRAM", "THREADS", "CONNS", "WAITS");
	fprintf(out, "    %-8s %-14s %-7s %-7s %-10s %9s %8s %8s  %s\n", "TID", "STATE", "TARGET",
	        "SLOT", "LANE", "QUERIES", "XACTS", "LAST USE", "SERVER");
	for (int i = 0; i < s->nprocs; i++) {
		const struct seg_proc *p = &s->procs[i];
		char program[SEG_PROGRAM_MAX];
		snap_printable(program, sizeof program, p->program);
		fprintf(out, "%-8d %-16s %7u %5u %6llu%s\n", p->pid, program, p->threads,
		        p->connections, (unsigned long long)p->waits,
		        p->inherited ? "  (some inherited)" : "");
		for (int k = 0; k < s->nconns; k++)
			if (s->conns[k].r.pid == p->pid)
				table_connection(out, s, &s->conns[k]);
	}
}

static void print_table(FILE *out, const struct snapshot *s, const char *segname)
{
	table_cap(out, s);
	cluster_table(out, s);
	snap_table_lanes(out, s);
	table_policy(out, s, segname);
	table_totals(out, &s->totals);
	table_processes(out, s);
}

/* ---- the command ------------------------------------------------------- */

int stat_take(struct snap_source *src, struct snapshot *s)
{
	snap_take(src, s);
	if (s->lost)
		return -1;
	s->totals.escaped = __atomic_load_n(&src->seg.hdr->totals.escaped, __ATOMIC_RELAXED);
	memcpy(escaped_object, src->seg.hdr->escaped_object, sizeof escaped_object - 1);
	cluster_read(&src->seg, s);
	return 0;
}


int cmd_stat(int argc, char **argv)
{
	const char *policy = NULL, *segment = NULL;
	enum format fmt = FMT_TABLE;
	for (int i = 1; i < argc; i++) {
		if (snap_option(argc, argv, &i, &policy, &segment))
			continue;
		if (!strcmp(argv[i], "--json")) {
			fmt = FMT_JSON;
		} else if (!strcmp(argv[i], "--prometheus")) {
			fmt = FMT_PROMETHEUS;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "pqshim stat: unknown option %s\n%s", argv[i], usage);
			return 2;
		}
	}
	struct snap_source src;
	int rc = snap_open(&src, policy, segment, "pqshim stat");
	if (rc != 0)
		return rc;
	struct snapshot *s = snap_new();
	if (!s) {
		snap_close(&src);
		fputs("pqshim stat: out of memory\n", stderr);
		return 1;
	}
	if (stat_take(&src, s) != 0) {
		fprintf(stderr, "pqshim stat: %s\n", s->lost_why);
		snap_free(s);
		snap_close(&src);
		return 1;
	}
	if (fmt == FMT_JSON)
		stat_write_json(stdout, s, src.segname);
	else if (fmt == FMT_PROMETHEUS)
		stat_write_prometheus(stdout, s);
	else
		print_table(stdout, s, src.segname);
	snap_free(s);
	snap_close(&src);
	return fflush(stdout) == 0 ? 0 : 1;
}
