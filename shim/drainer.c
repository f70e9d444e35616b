/*
 * drainer.c - one helper process per segment, for the processes that have
 * no thread of their own (see drainer.h).
 *
 * A single-threaded program must stay single-threaded: a second thread
 * makes glibc take its multi-threaded path in every send, recv and poll
 * (README "Measured").  Such a process gets no ticker thread (reload.c);
 * it notices a reload or a switch at its own calls, and the drainer does
 * for it what the ticker would do while it sends nothing:
 *  - every quarter of a second it ticks (reload.c: the policy file, the
 *    flag file), so the segment's read_only and switch_ns follow a switch
 *    even when every program is idle;
 *  - during the first second of a switch, every live process with a routed
 *    connection gets the drain signal, and notices the switch in its
 *    handler (drain.c), so that its next statement moves;
 *  - from then until drain_timeout (and 5 s more), it reads the segment's
 *    records, and each live process with a connection idle on the
 *    forbidden target (inside a transaction too, after
 *    drain_timeout, with in_transaction = terminate) gets the drain signal
 *    (drain.c: the process shuts those sockets down itself: no credentials
 *    or descriptors of the program leave it).
 *
 * Started by the first process of the segment that needs it (at a connect
 * or a tick, drainer_ensure), as a grandchild that the program can neither
 * wait for nor reap: the first child is cloned with no exit signal (wait()
 * and waitpid(-1) never see it, no SIGCHLD), makes a new session, forks
 * the drainer and exits; the shim reaps it at once.  The drainer closes
 * every descriptor it inherited (it opens the log file again), leaves the working
 * directory, drops the program's signal handlers and forgets its
 * connections.  One per segment and user (a signal reaches the processes
 * of its own user only): the drainer holds an open-file-description lock
 * (F_OFD_SETLK, write) on the byte at offset uid of the segment's file;
 * processes test it with F_OFD_GETLK, taking nothing.  kill -9 of the
 * drainer releases the lock: the next tick or connect of any single-threaded
 * process of the segment starts another (an idle segment has none until
 * then: its idle connections stay where they are meanwhile).  A process
 * looks at most every 2 s (an open and an fcntl), not under valgrind.  kill -9 of the
 * process that started it changes nothing: the drainer is not its child.
 * It exits when no live process of its user has been in the segment for 2 s, when the
 * policy no longer routes, or when the segment file goes or is replaced.
 */
#include "drainer.h"
#include "drain.h"
#include "log.h"
#include "readonly.h"
#include "reload.h"
#include "route.h"
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#define DRAINER_PERIOD_MS 250
#define DRAINER_ALONE_MS 2000     /* no live process this long: exit */
#define DRAINER_LOOK_MS 2000      /* a process looks for the drainer at most this often */

static int is_drainer;

int drainer_self(void)
{
	return is_drainer;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The drain signal to every live process with a connection the switch
 * forbids, still idle there (drain.c does the rest). */
static void wake_the_idle(void)
{
	struct seg_header *h = g.seg.hdr;
	uint64_t since = __atomic_load_n(&h->switch_ns, __ATOMIC_ACQUIRE);
	uint64_t now = clock_ns(CLOCK_REALTIME);
	if (!since || now < since)
		return;
	uint64_t age_ms = (now - since) / 1000000u;
	/* the first second: everyone with a routed connection, to notice */
	int notice = age_ms < DRAIN_GRACE_MS;
	if (age_ms > g.pol.drain_timeout_ms + 5000)
		return;
	uint32_t forbidden = __atomic_load_n(&h->read_only, __ATOMIC_ACQUIRE) ? TGT_PRIMARY : TGT_REPLICA;
	int intx = g.pol.in_transaction == INTX_TERMINATE && age_ms >= g.pol.drain_timeout_ms;
	uint32_t me = (uint32_t)geteuid();
	/* Each process judged once per round, woken or passed over: a dead
	 * one's many connections cost one look at /proc, not one each. */
	pid_t judged[64];
	int n = 0;
	for (uint32_t i = 0; i < g.seg.max_conns && n < 64; i++) {
		struct seg_conn *r = &g.seg.conns[i];
		if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) != SLOT_LIVE || r->proc >= g.seg.max_procs)
			continue;
		if (notice ? r->target == TGT_DIRECT : !drain_idle_on(r, forbidden, intx))
			continue;
		pid_t pid = r->pid;
		int seen = 0;
		for (int k = 0; k < n && !seen; k++)
			seen = judged[k] == pid;
		if (seen)
			continue;
		judged[n++] = pid;
		struct seg_proc *p = &g.seg.procs[r->proc];
		if (p->pid != pid || p->uid != me || !seg_proc_alive(&g.seg, r->proc))
			continue;
		union sigval v = { .sival_int = DRAIN_SIGNAL_MAGIC };
		sigqueue(pid, SIGURG, v);
	}
}

/* The election's lock: the byte at offset uid of the segment's file. */
static struct flock user_lock(short type)
{
	struct flock l = { .l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)geteuid(), .l_len = 1 };
	return l;
}

/* The segment file we mapped, still there, is the one fd opens. */
static int same_segment(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && st.st_dev == g.seg.dev && st.st_ino == g.seg.ino;
}

static void __attribute__((noreturn)) drainer_main(void)
{
	depth_enter();           /* nothing it does in libpq is the program's */
	is_drainer = 1;
	/* Hold nothing of the program's. */
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (syscall(SYS_close_range, 0, ~0U, 0) != 0)
		for (int fd = 0; fd < 1024; fd++)
			close(fd);
	int null = open("/dev/null", O_RDWR);
	while (null >= 0 && null < 2)
		null = dup(null);
	if (chdir("/") != 0)
		_exit(0);
	prctl(PR_SET_NAME, "pqshim-drainer", 0, 0, 0);
	shim_log_target(g.pol.log);
	memset(&g.map, 0, sizeof g.map);     /* the program's connections are not ours */
	g.pid = getpid();
	g.proc_idx = -1;
	g.proc = &g.proc_local;
	readonly_quiet();
	/* The election. */
	int fd = open(g.seg.path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);   /* a write lock */
	struct flock mine = user_lock(F_WRLCK);
	if (fd < 0 || fcntl(fd, F_OFD_SETLK, &mine) != 0 || !same_segment(fd))
		_exit(0);            /* another drainer runs */
	shim_log(LOG_INFO, "drainer started for segment %s", g.seg.name);
	uint64_t alone = 0;
	for (;;) {
		sleep_ms(DRAINER_PERIOD_MS);
		char why[SEG_ERROR_MAX];
		if (seg_check(&g.seg, why, sizeof why) != SEG_OK)
			break;           /* removed, replaced or truncated */
		shim_tick();         /* the policy file, the flag file */
		uint64_t mono = mono_ms();
		if (!route_enabled() || !seg_proc_any_live(&g.seg, -1, geteuid())) {
			if (!alone)
				alone = mono;
			else if (mono - alone >= DRAINER_ALONE_MS)
				break;
			continue;
		}
		alone = 0;
		wake_the_idle();
	}
	shim_log(LOG_INFO, "drainer for segment %s leaves", g.seg.name);
	_exit(0);
}

static void spawn(void)
{
	/* The first child: no exit signal, so the program can neither wait
	 * for it nor reap it.  A copy of this (single-threaded) process; it
	 * forks the drainer (a plain fork: the drainer gets glibc's state
	 * right) in a session of its own and exits. */
	pid_t mid = (pid_t)syscall(SYS_clone, 0, NULL, NULL, NULL, NULL);
	if (mid < 0) {
		shim_log(LOG_WARNING, "could not start the segment's drainer: %s; idle "
		         "connections will move at their next use only", strerror(errno));
		return;
	}
	if (mid == 0) {
		setsid();
		if (fork() == 0)
			drainer_main();
		_exit(0);
	}
	while (waitpid(mid, NULL, __WCLONE) < 0 && errno == EINTR)
		;
}

void drainer_ensure(void)
{
	static uint64_t last;
	/* Under valgrind a fork stays under valgrind, and its profile at exit
	 * would overwrite the program's (callgrind --callgrind-out-file): no
	 * drainer, and no look for one. */
	if (is_drainer || g.disabled || !g.policy_ok || !g.seg.hdr || g.proc_idx < 0
	    || !route_enabled() || g.pid != getpid() || RUNNING_ON_VALGRIND)
		return;
	uint64_t now = mono_ms();
	if (last && now - last < DRAINER_LOOK_MS)
		return;
	last = now;
	int fd = open(g.seg.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return;
	struct flock probe = user_lock(F_WRLCK);
	int nobody = same_segment(fd) && fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type == F_UNLCK;
	close(fd);
	if (nobody)
		spawn();
}
