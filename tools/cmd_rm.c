/*
 * cmd_rm.c - `pqshim rm SEGMENT`: remove a segment that no live process
 * uses.
 *
 * "Uses" is judged twice: by the segment's own process records (live pid
 * and start time: this covers other members of a group, whose /proc we may
 * not read), and by every process whose memory map we can read (this
 * covers a segment we cannot parse, another version's, and processes the
 * table had no room for).  A segment removed while a process still maps it
 * would split the cap: processes started afterwards would make a new one.
 */
#include "snapshot.h"
#include "procid.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
	"usage: pqshim rm SEGMENT\n"
	"\n"
	"Remove the segment SEGMENT (as `pqshim ls` names it) once no live process\n"
	"uses it.  Exit 0 when removed; 1 when it is in use, missing or cannot be\n"
	"removed (only its owner or root may: /dev/shm is sticky).\n";

#define SHOWN_PIDS 8

struct users {
	int n;
	pid_t pids[SHOWN_PIDS];
};

static void add_user(struct users *u, pid_t pid)
{
	for (int i = 0; i < u->n && i < SHOWN_PIDS; i++)
		if (u->pids[i] == pid)
			return;
	if (u->n < SHOWN_PIDS)
		u->pids[u->n] = pid;
	u->n++;
}

/* Does /proc/PID/maps map path? */
static int maps_file(pid_t pid, const char *path)
{
	char file[64], line[4096];
	snprintf(file, sizeof file, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(file, "r");
	if (!f)
		return 0;
	size_t n = strlen(path);
	int found = 0;
	while (!found && fgets(line, sizeof line, f)) {
		char *p = strchr(line, '/');
		found = p && !strncmp(p, path, n) && (p[n] == '\n' || p[n] == ' ' || !p[n]);
	}
	fclose(f);
	return found;
}

static void users_by_maps(const char *path, struct users *u)
{
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *e;
	pid_t self = getpid();
	while ((e = readdir(d))) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid != self && maps_file(pid, path))
			add_user(u, pid);
	}
	closedir(d);
}

static void users_by_records(struct segment *seg, struct users *u)
{
	struct seg_proc p;
	seg_reap(seg);
	for (uint32_t i = 0; i < seg->max_procs; i++)
		if (seg_proc_read(seg, (int)i, &p) == 0 && procid_alive(p.pid, p.starttime))
			add_user(u, p.pid);
}

static void program_of(pid_t pid, char *buf, size_t size)
{
	char file[64], raw[64] = "";
	snprintf(file, sizeof file, "/proc/%d/comm", (int)pid);
	FILE *f = fopen(file, "r");
	if (f) {
		if (!fgets(raw, sizeof raw, f))
			raw[0] = '\0';
		fclose(f);
	}
	raw[strcspn(raw, "\n")] = '\0';
	snap_printable(buf, size, raw[0] ? raw : "?");
}

int cmd_rm(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc != 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *name = argv[1];
	if (!seg_name_valid(name)) {
		fprintf(stderr, "pqshim rm: bad segment name \"%s\": a name is 1 to %d letters, "
		        "digits, '.', '_' or '-' (not a path)\n", name, SEG_NAME_MAX);
		return 2;
	}
	struct snap_found f;
	if (snap_find(name, &f) != 0) {
		fprintf(stderr, "pqshim rm: no segment %s (see pqshim ls)\n", name);
		return 1;
	}
	struct users u = { 0, { 0 } };
	struct segment seg;
	char why[SEG_ERROR_MAX];
	enum seg_verdict v = seg_attach_path(&seg, f.path, f.gid, why, sizeof why);
	if (v == SEG_OK) {
		users_by_records(&seg, &u);
		seg_detach(&seg);
	}
	users_by_maps(f.path, &u);
	if (u.n) {
		fprintf(stderr, "pqshim rm: segment %s is in use by %d live process%s:", name, u.n,
		        u.n == 1 ? "" : "es");
		for (int i = 0; i < u.n && i < SHOWN_PIDS; i++) {
			char prog[64];
			program_of(u.pids[i], prog, sizeof prog);
			fprintf(stderr, "%s pid %d (%s)", i ? "," : "", (int)u.pids[i], prog);
		}
		fprintf(stderr, "%s; not removed\n", u.n > SHOWN_PIDS ? ", ..." : "");
		return 1;
	}
	if (unlink(f.path) != 0) {
		int e = errno;
		struct stat st;
		if ((e == EPERM || e == EACCES) && lstat(f.path, &st) == 0)
			fprintf(stderr, "pqshim rm: cannot remove %s: owned by uid %u, and only its "
			        "owner or root may remove it (/dev/shm is sticky)\n", f.path,
			        (unsigned)st.st_uid);
		else
			fprintf(stderr, "pqshim rm: cannot remove %s: %s\n", f.path, strerror(e));
		return 1;
	}
	printf("removed segment %s (%s)%s%s\n", name, f.path, v == SEG_OK ? "" : ": it was ",
	       v == SEG_OK ? "" : why);
	return 0;
}
