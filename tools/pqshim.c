/*
 * pqshim.c - the command: dispatch to one subcommand per file (cmd_*.c).
 */
#include "cmds.h"
#include "snapshot.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: pqshim <command> [options]\n"
	"\n"
	"  run   [-p POLICY] -- COMMAND [ARG...]   run COMMAND with the shim preloaded\n"
	"  check POLICY                            validate a policy file (exit 0 or 1)\n"
	"  stat  [-p POLICY|-s SEGMENT] [--json|--prometheus]\n"
	"                                          what every process and connection is doing\n"
	"  top   [-p POLICY|-s SEGMENT] [-n N] [-d SECONDS]\n"
	"                                          live view, refreshed every second\n"
	"  drain [-p POLICY|-s SEGMENT] [--timeout 2m]\n"
	"                                          wait until no connection is left on a target\n"
	"                                          the policy forbids (exit 0; 1 on timeout)\n"
	"  ls                                      the segments of this user and of its groups\n"
	"  rm SEGMENT                              remove a segment no live process uses\n"
	"  serve [-p POLICY|-s SEGMENT] [--listen ADDR:PORT]\n"
	"                                          HTTP: /metrics (Prometheus) and /stat.json\n"
	"  demo                                    the main job: a primary, a replica, 14 clients\n"
	"                                          under a cap of 3, read-only on and off\n"
	"\n"
	"Without -p or -s, commands use $PQSHIM_POLICY, else the segment \"default\".\n"
	"`pqshim COMMAND --help` describes each command.\n";

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "stat"))
		return cmd_stat(argc - 1, argv + 1);
	if (!strcmp(cmd, "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(cmd, "top"))
		return cmd_top(argc - 1, argv + 1);
	if (!strcmp(cmd, "drain"))
		return cmd_drain(argc - 1, argv + 1);
	if (!strcmp(cmd, "ls"))
		return cmd_ls(argc - 1, argv + 1);
	if (!strcmp(cmd, "rm"))
		return cmd_rm(argc - 1, argv + 1);
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "demo"))
		return cmd_demo(argc - 1, argv + 1);
	fprintf(stderr, "pqshim: unknown command \"%s\"\n\n%s", cmd, usage);
	return 2;
}
