/*
 * cmd_check.c - `pqshim check POLICY`: does this policy file load?
 *
 * Runs the very checks the shim runs on load and reload (policy_load():
 * ownership, permissions, then the parser), so a policy that passes here is
 * one the shim will take.  Exit codes: 0 the policy loads ("POLICY: ok" on
 * stdout); 1 it does not (each error as "file:line: message" on stderr, or
 * "file: message" when the file itself is refused, then how to edit a policy
 * safely); 2 usage error.
 */
#include "cmds.h"

#include <stdio.h>
#include <string.h>

/* A file rewritten in place (`cat > policy`, most editors' "save" without
 * a backup) can be read half-written; a rename never can. */
static void print_safe_edit(FILE *to, const char *path)
{
	fprintf(to, "To change a policy that programs are using, write the new text to a\n"
	        "new file beside it, check it, then rename it over the old one:\n"
	        "    pqshim check %s.new && mv %s.new %s\n"
	        "A file rewritten in place is taken only once it has not changed for\n"
	        "half a second, and a write that pauses longer is taken half-done.\n",
	        path, path, path);
}

static void print_usage(FILE *to)
{
	fputs("usage: pqshim check POLICY\n"
	      "Check that the policy file POLICY loads: exit 0 if it does, else\n"
	      "print each error as file:line: message and exit 1.\n\n", to);
	print_safe_edit(to, "POLICY");
}

static void print_errors(const char *path, const struct policy_errors *errs)
{
	int shown = errs->count < POLICY_MAX_ERRORS ? errs->count : POLICY_MAX_ERRORS;

	for (int i = 0; i < shown; i++)
		fprintf(stderr, "%s\n", errs->msg[i]);
	if (errs->count > shown)
		fprintf(stderr, "%s: %d more error%s not shown\n", path,
		        errs->count - shown, errs->count - shown == 1 ? "" : "s");
}

int cmd_check(int argc, char **argv)
{
	struct policy policy;
	struct policy_errors errs;
	const char *path;

	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		print_usage(stdout);
		return 0;
	}
	/* "--" lets a file whose name starts with '-' be checked. */
	if (argc == 3 && strcmp(argv[1], "--") == 0) {
		path = argv[2];
	} else if (argc == 2 && argv[1][0] != '-') {
		path = argv[1];
	} else {
		if (argc == 2)
			fprintf(stderr, "pqshim check: unknown option %s\n", argv[1]);
		print_usage(stderr);
		return 2;
	}
	if (path[0] == '\0') {
		print_usage(stderr);
		return 2;
	}

	if (policy_load(path, &policy, &errs) != 0) {
		print_errors(path, &errs);
		print_safe_edit(stderr, path);
		return 1;
	}
	printf("%s: ok\n", path);
	return 0;
}
