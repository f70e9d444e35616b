/*
 * procid.c - a process's identity and liveness from /proc (see procid.h).
 */
#include "procid.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The first size-1 bytes of /proc/PID/<what>, NUL-terminated; length or -1. */
static ssize_t read_proc(pid_t pid, const char *what, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

uint64_t procid_starttime(pid_t pid)
{
	char buf[1024];
	if (read_proc(pid, "stat", buf, sizeof buf) < 0)
		return 0;
	/* comm (field 2) may hold spaces and parentheses: skip to the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* A zombie whose threads are all gone has finished: its parent just has
 * not reaped it yet.  (A leader that called pthread_exit also shows Z, but
 * its other threads still run.) */
static int process_finished(pid_t pid)
{
	char buf[1024];
	if (read_proc(pid, "stat", buf, sizeof buf) < 0)
		return 1;
	const char *p = strrchr(buf, ')');
	if (!p || (p[2] != 'Z' && p[2] != 'X'))
		return 0;
	if (read_proc(pid, "status", buf, sizeof buf) < 0)
		return 1;
	const char *th = strstr(buf, "\nThreads:");
	return !th || strtol(th + 9, NULL, 10) <= 1;
}

int procid_alive(pid_t pid, uint64_t starttime)
{
	if (pid <= 0)
		return 0;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return 0;
	uint64_t now = procid_starttime(pid);
	return now != 0 && now == starttime && !process_finished(pid);
}

char procid_task_state(pid_t tid, pid_t *pid)
{
	char buf[1024], state;
	int tgid;
	if (tid <= 0 || read_proc(tid, "status", buf, sizeof buf) < 0)
		return 0;
	const char *s = strstr(buf, "\nState:"), *t = strstr(buf, "\nTgid:");
	if (!s || !t || sscanf(s, "\nState: %c", &state) != 1 || sscanf(t, "\nTgid: %d", &tgid) != 1)
		return 0;
	*pid = tgid;
	return state;
}
