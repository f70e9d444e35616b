/*
 * reload.h - the tick (reload.c): about twice a second one thread of the
 * process looks at the policy file (and reloads it when it changed) and at
 * read-only's flag file; with routing, a ticker thread of the shim's ticks
 * even when the program sends nothing, and drains (in a threaded program;
 * for a single-threaded one the segment's drainer does, drainer.c).
 */
#ifndef PQSHIM_RELOAD_H
#define PQSHIM_RELOAD_H

/* Look now (the caller saw hot.next_tick pass). */
void shim_tick(void);

/* Remember the policy file as it was read, and when to look next. */
void reload_note_file(void);

/* Routing is on: start the ticker thread, once, in a process that runs
 * threads of its own; in a single-threaded one, catch the drainer's signal
 * and see that the segment's drainer runs (drainer.c) instead. */
void ticker_start(void);
/* Is it running? */
int ticker_running(void);

/* A fork child: no thread of the parent's runs in it, no tick is under way. */
void reload_after_fork(void);

#endif
