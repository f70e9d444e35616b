/*
 * log.c - see log.h.  One write(2) per line so that lines from threads and
 * processes sharing a file do not interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int log_fd = 2;          /* -1: syslog */

void shim_log_target(const char *where)
{
	int old = log_fd;
	if (!where || !*where || strcmp(where, "stderr") == 0) {
		log_fd = 2;
	} else if (strcmp(where, "syslog") == 0) {
		log_fd = -1;
	} else {
		int fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		log_fd = fd >= 0 ? fd : 2;
	}
	if (old > 2 && old != log_fd)
		close(old);
}

void shim_log(int level, const char *fmt, ...)
{
	char line[1024];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	if (log_fd < 0) {
		vsnprintf(line, sizeof line, fmt, ap);
		syslog(level, "pqshim: %s", line);
	} else {
		int n = snprintf(line, sizeof line, "pqshim[%d]: ", (int)getpid());
		if (n < 0)
			n = 0;
		int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
		if (m < 0)
			m = 0;
		size_t len = (size_t)n + (size_t)m;
		if (len > sizeof line - 2)
			len = sizeof line - 2;
		line[len++] = '\n';
		ssize_t w = write(log_fd, line, len);
		(void)w;
	}
	va_end(ap);
	errno = saved;
}
