/*
 * reload.h - the tick (reload.c): about twice a second one thread of the
 * process looks at the policy file (and reloads it when it changed) and at
 * read-only's flag file; with routing, a ticker thread of the shim's ticks
 * even when the program sends nothing, and drains.
 */
#ifndef PQSHIM_RELOAD_H
#define PQSHIM_RELOAD_H

/* Look now (the caller saw hot.next_tick pass). */
void shim_tick(void);

/* Remember the policy file as it was read, and when to look next. */
void reload_note_file(void);

/* Start the ticker thread, once (routing is on). */
void ticker_start(void);
/* Is it running? */
int ticker_running(void);

/* A fork child: no thread of the parent's runs in it, no tick is under way. */
void reload_after_fork(void);

#endif
