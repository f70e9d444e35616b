/*
 * log.c - see log.h.  One write(2) per line so that lines from threads and
 * processes sharing a file do not interleave.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int log_fd = 2;          /* -1: syslog (atomic) */
/* A log file of our own: its path, and the file log_fd was opened on.  A
 * program may close descriptors it did not open (a daemon's close_range)
 * and reuse the number for a file of its own: each line first checks that
 * the number is still our file, and opens the file again if not, never
 * writing to (or closing) what the number is now. */
static char log_path[PATH_MAX];
static dev_t log_dev;
static ino_t log_ino;

/* The stderr the program started with.  A program may close descriptor 2
 * and get the number again for a file or socket of its own (a daemon that
 * closes 0-2 and connects: libpq's socket is 2); a line written there
 * would corrupt it.  So fd 2 is written only while it is still that file;
 * otherwise lines are dropped ([shim] log = FILE or syslog for such
 * programs).  One fstat at start, in every program the shim is loaded in. */
static dev_t err_dev;
static ino_t err_ino;
static int err_open;

__attribute__((constructor)) static void stderr_keep(void)
{
	struct stat st;
	if (fstat(2, &st) == 0) {
		err_dev = st.st_dev;
		err_ino = st.st_ino;
		err_open = 1;
	}
}

static int still_stderr(void)
{
	struct stat st;
	return err_open && fstat(2, &st) == 0 && st.st_dev == err_dev && st.st_ino == err_ino;
}

static int open_log(void)
{
	int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		log_dev = st.st_dev;
		log_ino = st.st_ino;
	}
	return fd;
}

void shim_log_target(const char *where)
{
	int old = log_fd;
	struct stat st;
	int ours = old > 2 && fstat(old, &st) == 0 && st.st_dev == log_dev && st.st_ino == log_ino;
	if (!where || !*where || strcmp(where, "stderr") == 0) {
		log_fd = 2;
	} else if (strcmp(where, "syslog") == 0) {
		log_fd = -1;
	} else {
		snprintf(log_path, sizeof log_path, "%s", where);
		int fd = open_log();
		log_fd = fd >= 0 ? fd : 2;
	}
	if (ours && old != log_fd)
		close(old);
}

/* The descriptor to write a line to: ours still, or our file again; -1:
 * none (stderr is not the program's stderr any more). */
static int log_target_fd(void)
{
	int fd = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
	struct stat st;
	if (fd <= 2)
		return still_stderr() ? 2 : -1;
	if (fstat(fd, &st) == 0 && st.st_dev == log_dev && st.st_ino == log_ino)
		return fd;
	int fresh = open_log();
	if (fresh < 0)
		fresh = 2;   /* (written only while still the program's stderr) */
	int now = fresh;
	if (!__atomic_compare_exchange_n(&log_fd, &fd, fresh, 0, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE)) {
		if (fresh > 2)
			close(fresh);    /* another thread opened it again first */
		now = fd;
	}
	return now > 2 ? now : still_stderr() ? 2 : -1;
}

void shim_log(int level, const char *fmt, ...)
{
	char line[1024];
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	if (__atomic_load_n(&log_fd, __ATOMIC_ACQUIRE) < 0) {
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
		/* One line per message: libpq's texts end in, and may hold,
		 * newlines and tabs. */
		for (size_t i = (size_t)n; i < len; i++)
			if (line[i] == '\n' || line[i] == '\t')
				line[i] = ' ';
		while (len > (size_t)n && line[len - 1] == ' ')
			len--;
		line[len++] = '\n';
		int fd = log_target_fd();
		if (fd >= 0) {
			ssize_t w = write(fd, line, len);
			(void)w;
		}
	}
	va_end(ap);
	errno = saved;
}
