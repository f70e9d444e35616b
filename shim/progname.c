/*
 * progname.c - the program's name as it started, kept.
 *
 * glibc's program_invocation_short_name points into argv[0]; programs that
 * set their process title write over that memory (php-fpm's workers become
 * "php-fpm: pool www", and the pointer, ten bytes into the old
 * "/usr/sbin/php-fpm8.2", then reads "ool www").  The shim names a process
 * by it when it registers, at the first libpq call, long after such a
 * rewrite: so a constructor, which runs before main, copies it first.
 */
#include <errno.h>
#include <stdio.h>

static char name[64];

__attribute__((constructor)) static void progname_keep(void)
{
	if (!program_invocation_short_name)
		return;
	snprintf(name, sizeof name, "%s", program_invocation_short_name);
	program_invocation_short_name = name;
}
