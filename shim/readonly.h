/*
 * readonly.h - is read-only in force (readonly.c)?  The policy's
 * `[read_only] enabled` or its flag file say; every change is a new
 * generation that each connection notices at its next statement.
 */
#ifndef PQSHIM_READONLY_H
#define PQSHIM_READONLY_H

/* Look at the policy and the flag file now (start-up, every tick). */
void readonly_update(void);

/* In force now (1) or not. */
int readonly_on(void);

/* The generation: bumped at every switch. */
unsigned readonly_gen(void);

/* The segment's drainer (drainer.c) logs switches in words of its own:
 * "read-only on" lines are each program's own noticing. */
void readonly_quiet(void);

#endif
