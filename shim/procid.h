/*
 * procid.h - who a process is, from /proc: a pid alone is not an identity
 * (pids are reused), a pid and its start time are.
 *
 * Used by the segment's reaper, the cap's audit and the tool; nothing here
 * allocates, locks or keeps state.
 */
#ifndef PQSHIM_PROCID_H
#define PQSHIM_PROCID_H

#include <stdint.h>
#include <sys/types.h>

/* Field 22 of /proc/PID/stat (clock ticks after boot), or 0 if gone. */
uint64_t procid_starttime(pid_t pid);

/* Is the process pid with that start time still running?  A reused pid
 * has another start time; a killed process its parent has not reaped yet
 * is a zombie with no thread left, and counts as gone. */
int procid_alive(pid_t pid, uint64_t starttime);

/* The state letter of thread tid (R, S, T for stopped, t for traced, Z...)
 * from /proc/TID/status, and its process (Tgid) in *pid; 0 if gone. */
char procid_task_state(pid_t tid, pid_t *pid);

#endif
