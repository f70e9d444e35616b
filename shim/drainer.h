/*
 * drainer.h - the segment's drainer (drainer.c): one helper process per
 * segment that notices read-only switches for the processes that have no
 * thread of their own, and asks those that keep idle connections on the
 * forbidden target to end them (drain.c's signal).
 */
#ifndef PQSHIM_DRAINER_H
#define PQSHIM_DRAINER_H

/* From a process without a ticker (connect, tick): start the segment's
 * drainer unless one runs.  Cheap enough for a tick (an open, a flock). */
void drainer_ensure(void);

/* Is this process the drainer? */
int drainer_self(void);

#endif
