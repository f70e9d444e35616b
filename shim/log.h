/*
 * log.h - the shim's one voice: a line per event to stderr, syslog or a file.
 *
 * Lines start with "pqshim[pid]: "; callers pass the rest.  Logging never allocates on the heap and
 * never fails the caller; a line that cannot be written is dropped.
 */
#ifndef PQSHIM_LOG_H
#define PQSHIM_LOG_H

#include <syslog.h>   /* LOG_ERR, LOG_WARNING, LOG_INFO */

/* Where lines go: "stderr", "syslog" or an absolute path (appended to). */
void shim_log_target(const char *where);

void shim_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
