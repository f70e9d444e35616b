/*
 * cmd_demo.c - `pqshim demo`: run the main job (tools/demo.sh), found in the
 * source tree beside the build directory or, installed, in share/pqshim.
 */
#include "cmds.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cmd_demo(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		puts("usage: pqshim demo\n"
		     "Starts a throw-away primary and streaming replica, runs 16 clients under a\n"
		     "cap of 3 through pqshim (2 in a lane of one slot), switches read-only on and\n"
		     "off mid-run, runs an exclusive migration in the middle, then (as root) two\n"
		     "simulated hosts under one cap of scope = cluster, and reports what the\n"
		     "servers saw, with a picture of the run.  Leaves nothing running.");
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return 2;
	exe[n] = '\0';
	const char *dir = dirname(exe);
	const char *tries[] = { "%s/../tools/demo.sh", "%s/../share/pqshim/demo.sh" };
	for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
		char path[PATH_MAX + 32];
		snprintf(path, sizeof path, tries[i], dir);
		if (access(path, R_OK) == 0) {
			execl("/bin/bash", "bash", path, (char *)NULL);
			perror("bash");
			return 127;
		}
	}
	fprintf(stderr, "pqshim demo: demo.sh not found beside %s\n", dir);
	return 2;
}
