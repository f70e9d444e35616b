/*
 * cmd_ls.c - `pqshim ls`: the segments this user can see (its own and its
 * groups'), with the policy their programs run under, how many processes
 * and connections are live, when each was created and last used.
 *
 * Reads only: a segment it cannot verify (another user's file squatting a
 * name, another version) is listed with the reason instead of figures.
 */
#include "snapshot.h"

#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
	"usage: pqshim ls\n"
	"\n"
	"The segments of this user and of its groups, in /dev/shm: name, group,\n"
	"the policy their programs last loaded, live processes and connections,\n"
	"when the segment was created and when a process or connection last came\n"
	"or went (or a connection last worked).\n";

static void format_time(char *buf, size_t size, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	if (!ns || !localtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, size, "-");
}

static void format_group(uint32_t gid, char *buf, size_t size)
{
	struct group gr, *res = NULL;
	char tmp[4096];
	if (gid == SEG_NO_GROUP)
		snprintf(buf, size, "-");
	else if (getgrgid_r((gid_t)gid, &gr, tmp, sizeof tmp, &res) == 0 && res)
		snprintf(buf, size, "%s", res->gr_name);
	else
		snprintf(buf, size, "%u", gid);
}

/* Live processes and connections, and the last time anything happened. */
static void count_live(const struct segment *seg, int *procs, int *conns, uint64_t *used)
{
	struct seg_proc p;
	struct seg_conn c;
	*procs = *conns = 0;
	*used = __atomic_load_n(&seg->hdr->last_used_ns, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < seg->max_procs; i++)
		if (seg_proc_read(seg, (int)i, &p) == 0 && seg_proc_alive(seg, i))
			++*procs;
	for (uint32_t i = 0; i < seg->max_conns; i++) {
		if (seg_conn_read(seg, (int)i, &c) != 0 || c.proc >= seg->max_procs)
			continue;
		const struct seg_proc *o = &seg->procs[c.proc];
		if (o->pid != c.pid || !seg_proc_alive(seg, c.proc))
			continue;
		++*conns;
		uint64_t ns = seg_ticks_to_ns(seg->hdr, c.last_used);
		if (ns > *used)
			*used = ns;
	}
}

int cmd_ls(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "pqshim ls: unknown argument %s\n%s", argv[1], usage);
		return 2;
	}
	int n = snap_list(NULL, 0);
	struct snap_found *found = calloc(n ? (size_t)n : 1, sizeof *found);
	if (!found) {
		fputs("pqshim ls: out of memory\n", stderr);
		return 1;
	}
	n = snap_list(found, n);
	printf("%-24s %-10s %5s %5s  %-19s  %-19s  %s\n", "NAME", "GROUP", "PROCS", "CONNS",
	       "CREATED", "LAST USED", "POLICY");
	for (int i = 0; i < n; i++) {
		struct segment seg;
		char why[SEG_ERROR_MAX], grp[64], name[SEG_NAME_MAX + 1];
		format_group(found[i].gid, grp, sizeof grp);
		snap_printable(name, sizeof name, found[i].name);
		if (seg_attach_path(&seg, found[i].path, found[i].gid, why, sizeof why) != SEG_OK) {
			char shown[SEG_ERROR_MAX];
			snap_printable(shown, sizeof shown, why);
			printf("%-24s %-10s %5s %5s  %-19s  %-19s  (%s)\n", name, grp, "?", "?", "-", "-",
			       shown);
			continue;
		}
		int procs, conns;
		uint64_t used;
		char created[32], last[32], policy[SEG_PATH_MAX];
		count_live(&seg, &procs, &conns, &used);
		format_time(created, sizeof created, seg.hdr->created_ns);
		format_time(last, sizeof last, used);
		char raw[SEG_PATH_MAX];
		memcpy(raw, seg.hdr->policy_path, sizeof raw);
		raw[sizeof raw - 1] = '\0';
		snap_printable(policy, sizeof policy, raw[0] ? raw : "-");
		printf("%-24s %-10s %5d %5d  %-19s  %-19s  %s\n", name, grp, procs, conns, created,
		       last, policy);
		seg_detach(&seg);
	}
	free(found);
	return fflush(stdout) == 0 ? 0 : 1;
}
