/*
 * cmd_run.c - `pqshim run [-p POLICY] -- COMMAND...`: exec COMMAND with
 * LD_PRELOAD and PQSHIM_POLICY set, exactly as a user could by hand.
 */
#include "cmds.h"

#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"usage: pqshim run [-p POLICY] -- COMMAND [ARG...]\n"
	"Runs COMMAND with libpqshim.so preloaded and the policy set; the same as\n"
	"LD_PRELOAD=.../libpqshim.so PQSHIM_POLICY=POLICY COMMAND.  Without a policy\n"
	"the shim tracks and reports but enforces nothing.\n";

/* The library beside the tool (build tree) or in ../lib (installed). */
static int find_library(char *out, size_t size)
{
	const char *env = getenv("PQSHIM_LIB");
	if (env && *env) {
		snprintf(out, size, "%s", env);
		return access(out, R_OK);
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	const char *dir = dirname(exe);
	const char *tries[] = { "%s/libpqshim.so", "%s/../lib/libpqshim.so" };
	for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
		char path[PATH_MAX + 32];
		snprintf(path, sizeof path, tries[i], dir);
		if (access(path, R_OK) == 0 && realpath(path, out))
			return 0;
	}
	return -1;
}

int cmd_run(int argc, char **argv)
{
	const char *policy = NULL;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else if (!strcmp(argv[i], "-p") && i + 1 < argc) {
			policy = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "pqshim run: unknown option %s\n%s", argv[i], usage);
			return 2;
		} else {
			break;      /* `pqshim run cmd` without -- */
		}
	}
	if (i >= argc) {
		fputs(usage, stderr);
		return 2;
	}

	char lib[PATH_MAX];
	if (find_library(lib, sizeof lib) != 0) {
		fprintf(stderr, "pqshim run: libpqshim.so not found beside %s or in ../lib "
		        "(set PQSHIM_LIB)\n", argv[0]);
		return 2;
	}
	if (policy) {
		char abs[PATH_MAX];
		struct policy p;
		struct policy_errors errs;
		/* Absolute, but symlinks kept: the program must follow the
		 * link when it is re-pointed, and use the segment a program
		 * given the same path by hand uses. */
		if (!policy_absolute_path(policy, abs, sizeof abs) || access(abs, R_OK) != 0) {
			fprintf(stderr, "pqshim run: %s: cannot read the policy\n", policy);
			return 1;
		}
		if (policy_load(abs, &p, &errs) != 0) {
			int shown = errs.count < POLICY_MAX_ERRORS ? errs.count : POLICY_MAX_ERRORS;
			for (int k = 0; k < shown; k++)
				fprintf(stderr, "%s\n", errs.msg[k]);
			fprintf(stderr, "pqshim run: the policy does not load; not running %s\n", argv[i]);
			return 1;
		}
		setenv("PQSHIM_POLICY", abs, 1);
	}
	const char *old = getenv("LD_PRELOAD");
	if (old && *old) {
		char *both = malloc(strlen(lib) + strlen(old) + 2);
		if (!both)
			return 2;
		sprintf(both, "%s:%s", lib, old);
		setenv("LD_PRELOAD", both, 1);
	} else {
		setenv("LD_PRELOAD", lib, 1);
	}
	execvp(argv[i], argv + i);
	perror(argv[i]);
	return 127;
}
