/*
 * segwatch.h - the shim's use of its segment: attaching it as the policy
 * says, acting on what segment.c finds (on_error), and watching it while
 * programs run (a file truncated or replaced under them).
 *
 * Invariant: once the segment is found unusable under on_error =
 * fail-closed, every connect and statement of the process is refused with
 * the reason, for good; under fail-open the cap becomes the process's own.
 */
#ifndef PQSHIM_SEGWATCH_H
#define PQSHIM_SEGWATCH_H

#include <stddef.h>

/* At start-up: map the segment `name` with the policy's [shim] group,
 * max_processes, max_tracked, and guard it against SIGBUS. */
void segwatch_attach(const char *name);

/* Move to the segment `name` as policy p says it (a process that started
 * on an unusable policy and guessed another: startup.c).  0, or -1 (it
 * stays where it is, and the log says why). */
struct policy;
int segwatch_move(const char *name, const struct policy *p);

/* The process table had no room for this process. */
void segwatch_table_full(void);

/* On every tick: is the segment still whole? */
void segwatch_check(void);

/* The refusal of a connect or of a statement while the segment cannot be
 * used: its text into buf and 1, or 0.  The caller counts it (record.c). */
int segwatch_connect_refusal(char *buf, size_t size);
int segwatch_refusal(char *buf, size_t size);

#endif
