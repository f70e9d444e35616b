/*
 * wrap_exec.c - exec() ends the process image, and its records with it.
 *
 * An image that execs keeps its pid and start time, so to the segment's
 * reaper it looks alive for as long as the new program runs, while its
 * connections are gone (libpq's sockets are close-on-exec: the server ends
 * their sessions, transactions included).  Its slots would stay held by
 * work the server no longer has: under a small cap, everyone else waits
 * and times out.  So every exec is bracketed by seg_proc_exec_begin/end
 * (segment.h): the record is marked, with a lock that a successful exec
 * drops with the old image's files, and the reaper judges the record dead
 * from then on.  A failed exec takes the mark back: the process keeps its
 * connections and their slots, as libpq keeps them.
 *
 * exec may be called in a fork child of a threaded program (where only
 * async-signal-safe calls are allowed) and in a vfork child (which shares
 * the parent's memory): nothing here locks or allocates, and a child that
 * is not the record's process (vfork, or a fork child that never used
 * libpq) marks nothing.  glibc's own exec family calls its internal
 * execve, which no preload sees: each member is wrapped.
 */
#include "real.h"
#include "segment.h"
#include "shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

/* The record to mark: this process's own, if it has one. */
static int exec_begin(void)
{
	int idx = g.proc_idx;
	if (!g.seg.hdr || idx < 0 || (uint32_t)idx >= g.seg.max_procs
	    || g.seg.procs[idx].pid != getpid())
		return -1;
	return seg_proc_exec_begin(&g.seg, idx);
}

static void exec_failed(int fd)
{
	int e = errno;
	seg_proc_exec_end(&g.seg, g.proc_idx, fd);
	errno = e;
}

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execv_fn)(const char *, char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);
typedef int (*execveat_fn)(int, const char *, char *const[], char *const[], int);

/* glibc's, found while the library loads: a vfork child (Python's
 * subprocess) must not look symbols up (the loader's lock may be held by
 * a thread of its parent).  Six look-ups, no system call. */
static struct {
	execve_fn execve, execvpe;
	execv_fn execv, execvp;
	fexecve_fn fexecve;
	execveat_fn execveat;
} next;

__attribute__((constructor)) static void exec_resolve(void)
{
	real_dlsym_init();
	if (!real_dlsym)
		return;
	next.execve = (execve_fn)real_dlsym(RTLD_NEXT, "execve");
	next.execvpe = (execve_fn)real_dlsym(RTLD_NEXT, "execvpe");
	next.execv = (execv_fn)real_dlsym(RTLD_NEXT, "execv");
	next.execvp = (execv_fn)real_dlsym(RTLD_NEXT, "execvp");
	next.fexecve = (fexecve_fn)real_dlsym(RTLD_NEXT, "fexecve");
	next.execveat = (execveat_fn)real_dlsym(RTLD_NEXT, "execveat");
}

/* Each wrapper: glibc's function, the record marked around the call. */
#define EXEC_CALL(fn, ...)                                                    \
	do {                                                                  \
		if (!next.fn) {                                               \
			errno = ENOSYS;                                       \
			return -1;                                            \
		}                                                             \
		int lock = exec_begin();                                      \
		int rc = next.fn(__VA_ARGS__);                                \
		exec_failed(lock);                                            \
		return rc;                                                    \
	} while (0)

SHIM_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	EXEC_CALL(execve, path, argv, envp);
}

SHIM_EXPORT int execv(const char *path, char *const argv[])
{
	EXEC_CALL(execv, path, argv);
}

SHIM_EXPORT int execvp(const char *file, char *const argv[])
{
	EXEC_CALL(execvp, file, argv);
}

SHIM_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	EXEC_CALL(execvpe, file, argv, envp);
}

SHIM_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	EXEC_CALL(fexecve, fd, argv, envp);
}

SHIM_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
                         int flags)
{
	EXEC_CALL(execveat, dirfd, path, argv, envp, flags);
}

/* execl, execlp, execle: the list as an array on the stack (glibc does the
 * same: no allocation after fork), then the array form above. */
static size_t count_args(const char *arg, va_list ap)
{
	size_t n = 1;
	va_list aq;
	va_copy(aq, ap);
	for (const char *a = arg; a; a = va_arg(aq, const char *))
		n++;
	va_end(aq);
	return n;   /* the arguments and the NULL */
}

static void fill_args(char **argv, size_t n, const char *arg, va_list ap)
{
	argv[0] = (char *)arg;
	for (size_t i = 1; i < n; i++)
		argv[i] = va_arg(ap, char *);
}

/* The list from `arg` to its NULL as `char *argv[]` on this frame, ap
 * left just past the NULL (execle's envp follows). */
#define LIST_TO_ARGV(arg, ap)                                                 \
	va_list ap;                                                           \
	va_start(ap, arg);                                                    \
	size_t nargs_ = count_args(arg, ap);                                  \
	char *argv[nargs_];                                                   \
	fill_args(argv, nargs_, arg, ap)

SHIM_EXPORT int execl(const char *path, const char *arg, ...)
{
	LIST_TO_ARGV(arg, ap);
	va_end(ap);
	return execv(path, argv);
}

SHIM_EXPORT int execlp(const char *file, const char *arg, ...)
{
	LIST_TO_ARGV(arg, ap);
	va_end(ap);
	return execvp(file, argv);
}

SHIM_EXPORT int execle(const char *path, const char *arg, ...)
{
	LIST_TO_ARGV(arg, ap);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}
