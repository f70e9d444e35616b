/*
 * cmd_stat.c - `pqshim stat`: one snapshot of a segment, as a table or JSON.
 *
 * Reading never blocks the processes that write: each record is copied
 * with its generation checked before and after (segment.h).  Dead processes
 * are reaped first, so what is shown is what is alive.
 */
#include "cmds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: pqshim stat [-p POLICY | -s SEGMENT] [--json]\n";

static const char *state_names[] = { "connecting", "idle", "active", "in_transaction", "waiting" };
static const char *status_names[] = { "connecting", "ok", "bad" };
static const char *target_names[] = { "direct", "primary", "replica" };

#define NAME(table, i) ((i) < sizeof table / sizeof table[0] ? table[i] : "unknown")

static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

struct snapshot {
	struct seg_header hdr;
	struct seg_proc procs[SEG_MAX_PROCS];
	int nprocs;
	struct seg_conn conns[SEG_MAX_CONNS];
	int nconns;
	struct seg_totals totals;   /* folded totals + live connections */
};

static void take(struct segment *seg, struct snapshot *s)
{
	memcpy(&s->hdr, seg->hdr, sizeof s->hdr);
	s->nprocs = s->nconns = 0;
	for (int i = 0; i < SEG_MAX_PROCS; i++)
		if (seg_proc_read(seg, i, &s->procs[s->nprocs]) == 0)
			s->nprocs++;
	for (int i = 0; i < SEG_MAX_CONNS; i++)
		if (seg_conn_read(seg, i, &s->conns[s->nconns]) == 0)
			s->nconns++;
	s->totals = s->hdr.totals;
	for (int i = 0; i < s->nconns; i++) {
		s->totals.queries += s->conns[i].queries;
		s->totals.xacts += s->conns[i].xacts;
		s->totals.cross_thread_uses += s->conns[i].cross_thread_uses;
	}
}

static void print_json(FILE *out, const struct snapshot *s, const char *policy_path)
{
	const struct seg_totals *t = &s->totals;
	fprintf(out, "{\n  \"segment\": ");
	fputs("{", out);
	fprintf(out, "\"version\": %u}", s->hdr.version);
	fprintf(out, ",\n  \"policy\": {\"path\": ");
	json_string(out, s->hdr.policy_path[0] ? s->hdr.policy_path : policy_path);
	fprintf(out, ", \"generation\": %llu, \"read_only\": false, \"error\": ",
	        (unsigned long long)s->hdr.policy_generation);
	if (s->hdr.policy_error[0])
		json_string(out, s->hdr.policy_error);
	else
		fputs("null", out);
	fprintf(out, "},\n  \"cap\": {\"scope\": \"host\", \"max_active\": 0, \"active\": 0, "
	        "\"waiting\": 0, \"max_connections\": 0, \"connections\": %d, \"waits\": 0, "
	        "\"timeouts\": 0, \"wait_ms_p50\": 0, \"wait_ms_p99\": 0},\n", s->nconns);

	fputs("  \"processes\": [", out);
	for (int i = 0; i < s->nprocs; i++) {
		const struct seg_proc *p = &s->procs[i];
		fprintf(out, "%s\n    {\"pid\": %d, \"ppid\": %d, \"program\": ", i ? "," : "", p->pid, p->ppid);
		json_string(out, p->program);
		fprintf(out, ", \"threads\": %u, \"connections\": %u, \"inherited_connections\": %u, "
		        "\"started\": %.3f}", p->threads, p->connections, p->inherited,
		        p->started_ns / 1e9);
	}
	fputs(s->nprocs ? "\n  ],\n" : "],\n", out);

	fputs("  \"connections\": [", out);
	for (int i = 0; i < s->nconns; i++) {
		const struct seg_conn *c = &s->conns[i];
		fprintf(out, "%s\n    {\"pid\": %d, \"tid\": %d, \"threads\": [", i ? "," : "", c->pid, c->tid);
		unsigned n = c->nthreads < SEG_THREADS_SEEN ? c->nthreads : SEG_THREADS_SEEN;
		for (unsigned k = 0; k < n; k++)
			fprintf(out, "%s%d", k ? ", " : "", c->threads[k]);
		fprintf(out, "], \"threads_seen\": %u, \"target\": \"%s\", \"state\": \"%s\", "
		        "\"status\": \"%s\", \"queries\": %llu, \"xacts\": %llu, "
		        "\"cross_thread_uses\": %llu, \"inherited\": %s, \"backend_pid\": %u, "
		        "\"opened\": %.3f, \"last_used\": %.3f, \"server\": ",
		        c->nthreads, NAME(target_names, c->target), NAME(state_names, c->cstate),
		        NAME(status_names, c->status), (unsigned long long)c->queries,
		        (unsigned long long)c->xacts, (unsigned long long)c->cross_thread_uses,
		        (c->flags & CONN_INHERITED) ? "true" : "false", c->backend_pid,
		        c->opened_ns / 1e9, seg_ticks_to_ns(&s->hdr, c->last_used) / 1e9);
		json_string(out, c->server);
		fputs(", \"application_name\": ", out);
		json_string(out, c->appname);
		fputc('}', out);
	}
	fputs(s->nconns ? "\n  ],\n" : "],\n", out);

	fprintf(out, "  \"totals\": {\"queries\": %llu, \"xacts\": %llu, \"connects\": %llu, "
	        "\"closes\": %llu, \"redirects\": %llu, \"migrations\": %llu, "
	        "\"cross_thread_uses\": %llu, \"refused\": %llu, \"leaked\": %llu, "
	        "\"untracked\": %llu}\n}\n",
	        (unsigned long long)t->queries, (unsigned long long)t->xacts,
	        (unsigned long long)t->connects, (unsigned long long)t->closes,
	        (unsigned long long)t->redirects, (unsigned long long)t->migrations,
	        (unsigned long long)t->cross_thread_uses, (unsigned long long)t->refused,
	        (unsigned long long)t->leaked, (unsigned long long)t->untracked);
}

static void print_table(FILE *out, const struct snapshot *s, const char *segname)
{
	const struct seg_totals *t = &s->totals;
	fprintf(out, "segment %s  policy %s%s%s\n", segname,
	        s->hdr.policy_path[0] ? s->hdr.policy_path : "(none)",
	        s->hdr.policy_error[0] ? "  ERROR: " : "", s->hdr.policy_error);
	fprintf(out, "connections %d  queries %llu  xacts %llu  connects %llu  refused %llu  "
	        "cross-thread %llu  leaked %llu\n\n", s->nconns,
	        (unsigned long long)t->queries, (unsigned long long)t->xacts,
	        (unsigned long long)t->connects, (unsigned long long)t->refused,
	        (unsigned long long)t->cross_thread_uses, (unsigned long long)t->leaked);
	for (int i = 0; i < s->nprocs; i++) {
		const struct seg_proc *p = &s->procs[i];
		fprintf(out, "%-8d %-16s threads %-4u connections %u%s\n", p->pid, p->program,
		        p->threads, p->connections, p->inherited ? " (some inherited)" : "");
		for (int k = 0; k < s->nconns; k++) {
			const struct seg_conn *c = &s->conns[k];
			if (c->pid != p->pid)
				continue;
			fprintf(out, "  tid %-8d %-14s %-7s q %-8llu x %-7llu %s%s\n", c->tid,
			        NAME(state_names, c->cstate), NAME(target_names, c->target),
			        (unsigned long long)c->queries, (unsigned long long)c->xacts,
			        c->server, c->nthreads > 1 ? "  [shared by threads]" : "");
		}
	}
}

int cmd_stat(int argc, char **argv)
{
	const char *policy = NULL, *segment = NULL;
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-p") && i + 1 < argc)
			policy = argv[++i];
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			segment = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "pqshim stat: unknown option %s\n%s", argv[i], usage);
			return 2;
		}
	}
	char name[POLICY_STR_MAX], ppath[POLICY_STR_MAX];
	target_segment(policy, segment, name, sizeof name, ppath, sizeof ppath);

	struct segment seg;
	/* Create it if absent: an empty segment is a true answer ("nothing
	 * has run yet"), and the first program will find it ready. */
	int err = seg_attach(&seg, name, 1);
	if (err) {
		char path[320];
		seg_path(name, path, sizeof path);
		fprintf(stderr, "pqshim stat: cannot map segment %s (%s): %s\n", name, path, seg_strerror(err));
		return 1;
	}
	seg_reap(&seg);
	struct snapshot *s = malloc(sizeof *s);
	if (!s)
		return 1;
	take(&seg, s);
	if (json)
		print_json(stdout, s, ppath);
	else
		print_table(stdout, s, name);
	free(s);
	seg_detach(&seg);
	return 0;
}
