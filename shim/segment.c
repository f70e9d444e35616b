/*
 * segment.c - create, map, claim, release and reap (see segment.h).
 *
 * Shared by the shim and the tool.  Nothing here allocates or locks: claims
 * and releases are single CASes on a record's state word.
 */
#include "segment.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static size_t seg_size(void)
{
	size_t sz = sizeof(struct seg_header)
	          + SEG_MAX_PROCS * sizeof(struct seg_proc)
	          + SEG_MAX_CONNS * sizeof(struct seg_conn);
	long page = sysconf(_SC_PAGESIZE);
	return (sz + (size_t)page - 1) & ~((size_t)page - 1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void seg_path(const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "/dev/shm/pqshim.%u.%s", (unsigned)geteuid(), name);
}

static void seg_layout(struct segment *seg, void *base, size_t size)
{
	seg->hdr = base;
	seg->procs = (struct seg_proc *)((char *)base + sizeof(struct seg_header));
	seg->conns = (struct seg_conn *)(seg->procs + SEG_MAX_PROCS);
	seg->size = size;
}

static int header_matches(const struct seg_header *h)
{
	return h->magic == SEG_MAGIC && h->version == SEG_VERSION
	    && h->header_size == sizeof(struct seg_header)
	    && h->proc_size == sizeof(struct seg_proc)
	    && h->conn_size == sizeof(struct seg_conn)
	    && h->max_procs == SEG_MAX_PROCS && h->max_conns == SEG_MAX_CONNS;
}

/* Create a fully initialised segment under a private name, then link it
 * into place: link() fails if another process won the race, and then we
 * use theirs. */
static int seg_create(const char *path, size_t size)
{
	char tmp[320];
	snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	int err = 0;
	if (ftruncate(fd, (off_t)size) != 0) {
		err = -errno;
		goto out;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	struct seg_header *h = base;
	h->version = SEG_VERSION;
	h->header_size = sizeof(struct seg_header);
	h->proc_size = sizeof(struct seg_proc);
	h->conn_size = sizeof(struct seg_conn);
	h->max_procs = SEG_MAX_PROCS;
	h->max_conns = SEG_MAX_CONNS;
	h->created_ns = now_ns();
	h->clock_mono0 = clock_ns(CLOCK_MONOTONIC);
	h->clock_ticks0 = clock_ticks();
	/* Robust: if a process dies holding it, the next locker gets
	 * EOWNERDEAD instead of waiting forever (cap.c repairs). */
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&h->cap.lock, &ma);
	pthread_mutexattr_destroy(&ma);
	__atomic_store_n(&h->magic, SEG_MAGIC, __ATOMIC_RELEASE);
	munmap(base, size);
	if (link(tmp, path) != 0 && errno != EEXIST)
		err = -errno;
out:
	close(fd);
	unlink(tmp);
	return err;
}

int seg_attach(struct segment *seg, const char *name, int create)
{
	char path[300];
	size_t size = seg_size();

	memset(seg, 0, sizeof *seg);
	snprintf(seg->name, sizeof seg->name, "%s", name);
	seg_path(name, path, sizeof path);

	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		int err = seg_create(path, size);
		if (err)
			return err;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return -errno;

	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()
	    || (st.st_mode & 077)) {
		close(fd);
		return -EPERM;    /* not ours, or others could read or write it */
	}
	if ((size_t)st.st_size != size) {
		close(fd);
		return -EPROTO;   /* another layout */
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return -errno;
	seg_layout(seg, base, size);
	if (!header_matches(seg->hdr)) {
		seg_detach(seg);
		return -EPROTO;
	}
	return 0;
}

void seg_detach(struct segment *seg)
{
	if (seg->hdr)
		munmap(seg->hdr, seg->size);
	seg->hdr = NULL;
}

static int claim(uint32_t *state, uint32_t *gen)
{
	uint32_t expect = SLOT_FREE;
	if (__atomic_load_n(state, __ATOMIC_RELAXED) != SLOT_FREE)
		return 0;
	if (!__atomic_compare_exchange_n(state, &expect, SLOT_CLAIMED, 0,
	                                 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return 0;
	__atomic_fetch_add(gen, 1, __ATOMIC_RELEASE);
	return 1;
}

int seg_proc_claim(struct segment *seg)
{
	for (int i = 0; i < SEG_MAX_PROCS; i++)
		if (claim(&seg->procs[i].state, &seg->procs[i].gen))
			return i;
	return -1;
}

int seg_conn_claim(struct segment *seg, uint32_t proc)
{
	/* Start at a per-process offset so that processes don't all fight over
	 * the first free records. */
	pid_t pid = getpid();
	unsigned start = ((unsigned)pid * 2654435761u) % SEG_MAX_CONNS;
	for (unsigned k = 0; k < SEG_MAX_CONNS; k++) {
		unsigned i = (start + k) % SEG_MAX_CONNS;
		struct seg_conn *c = &seg->conns[i];
		if (__atomic_load_n(&c->state, __ATOMIC_RELAXED) != SLOT_FREE)
			continue;
		/* A free record names no owner (pid 0, cleared on release), so
		 * the reaper leaves it alone until the winner writes its own. */
		if (claim(&c->state, &c->gen)) {
			__atomic_store_n(&c->pid, pid, __ATOMIC_RELAXED);
			__atomic_store_n(&c->proc, proc, __ATOMIC_RELAXED);
			memset(c->hold, 0, sizeof c->hold);
			return (int)i;
		}
	}
	return -1;
}

void seg_conn_release(struct segment *seg, int idx, int leaked)
{
	struct seg_conn *c = &seg->conns[idx];
	struct seg_totals *t = &seg->hdr->totals;

	seg_add(&t->queries, __atomic_load_n(&c->queries, __ATOMIC_RELAXED));
	seg_add(&t->xacts, __atomic_load_n(&c->xacts, __ATOMIC_RELAXED));
	seg_add(&t->cross_thread_uses, __atomic_load_n(&c->cross_thread_uses, __ATOMIC_RELAXED));
	/* A record inherited across fork() is a copy of the parent's, which
	 * counts the connect, the close and any leak: the copy counts none. */
	if (!(c->flags & CONN_INHERITED)) {
		seg_add(&t->closes, 1);
		if (leaked)
			seg_add(&t->leaked, 1);
	}
	__atomic_store_n(&c->pid, 0, __ATOMIC_RELAXED);
	__atomic_fetch_add(&c->gen, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&c->state, SLOT_FREE, __ATOMIC_RELEASE);
}

void seg_proc_release(struct segment *seg, int idx)
{
	struct seg_proc *p = &seg->procs[idx];
	__atomic_fetch_add(&p->gen, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&p->state, SLOT_FREE, __ATOMIC_RELEASE);
}

uint64_t seg_starttime(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
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
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (!p || (p[2] != 'Z' && p[2] != 'X'))
		return 0;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	const char *th = strstr(buf, "\nThreads:");
	return !th || strtol(th + 9, NULL, 10) <= 1;
}

int seg_process_alive(pid_t pid, uint64_t starttime)
{
	if (pid <= 0)
		return 0;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return 0;
	uint64_t now = seg_starttime(pid);
	/* A reused pid has another start time; a killed process that its
	 * parent has not reaped yet is a zombie with no threads left. */
	return now != 0 && now == starttime && !process_finished(pid);
}

int seg_reap(struct segment *seg)
{
	int reaped = 0;
	for (int i = 0; i < SEG_MAX_PROCS; i++) {
		struct seg_proc *p = &seg->procs[i];
		if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != SLOT_LIVE)
			continue;
		/* Judge the owner we read, and take the record only if it is
		 * still that owner's: it may have exited and been replaced
		 * by a new process while we looked. */
		uint32_t gen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
		pid_t pid = p->pid;
		uint64_t start = p->starttime;
		if (seg_process_alive(pid, start))
			continue;
		uint32_t expect = SLOT_LIVE;
		if (!__atomic_compare_exchange_n(&p->state, &expect, SLOT_REAPING, 0,
		                                 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			continue;
		if (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) != gen || p->pid != pid
		    || p->starttime != start) {
			__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
			continue;
		}
		for (int j = 0; j < SEG_MAX_CONNS; j++) {
			struct seg_conn *c = &seg->conns[j];
			uint32_t live = SLOT_LIVE, claimed = SLOT_CLAIMED;
			if (c->proc != (uint32_t)i || c->pid != pid)
				continue;
			if (__atomic_compare_exchange_n(&c->state, &live, SLOT_REAPING, 0,
			                                __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
				seg_conn_release(seg, j, 1);
			/* claimed but never opened: it died connecting */
			else if (c->state == SLOT_CLAIMED && c->pid == pid) {
				c->pid = 0;
				__atomic_fetch_add(&c->gen, 1, __ATOMIC_RELEASE);
				__atomic_compare_exchange_n(&c->state, &claimed, SLOT_FREE, 0,
				                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
			}
		}
		seg_proc_release(seg, i);
		reaped++;
	}
	/* The dead may have held slots of the cap: count again from the living. */
	if (reaped)
		cap_audit(seg);
	return reaped;
}

/* Copy a LIVE record whose state word and generation come first: the
 * same generation before and after the copy means nobody reclaimed it. */
static int read_record(const void *rec, void *out, size_t size)
{
	const uint32_t *state = rec, *gen = state + 1;
	for (int tries = 0; tries < 4; tries++) {
		uint32_t g1 = __atomic_load_n(gen, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(state, __ATOMIC_ACQUIRE) != SLOT_LIVE)
			return -1;
		memcpy(out, rec, size);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(gen, __ATOMIC_RELAXED) == g1
		    && __atomic_load_n(state, __ATOMIC_RELAXED) == SLOT_LIVE)
			return 0;
	}
	return -1;
}

int seg_proc_read(const struct segment *seg, int idx, struct seg_proc *out)
{
	return read_record(&seg->procs[idx], out, sizeof *out);
}

int seg_conn_read(const struct segment *seg, int idx, struct seg_conn *out)
{
	return read_record(&seg->conns[idx], out, sizeof *out);
}

uint64_t seg_ticks_to_ns(const struct seg_header *h, uint64_t ticks)
{
	uint64_t mono = clock_ns(CLOCK_MONOTONIC), t_now = clock_ticks();
	uint64_t real_now = clock_ns(CLOCK_REALTIME);
	if (!ticks)
		return 0;
	if (CLOCK_TICKS_ARE_NS)
		return ticks + (real_now - mono);
	/* ticks per ns measured over the segment's whole life: the longer it
	 * lives, the better the ratio; after 1 ms it is within 0.01%. */
	double span = (double)(mono - h->clock_mono0);
	if (span <= 0 || t_now <= h->clock_ticks0)
		return real_now;
	double per_ns = (double)(t_now - h->clock_ticks0) / span;
	double age_ns = ((double)t_now - (double)ticks) / per_ns;
	return real_now - (uint64_t)(age_ns > 0 ? age_ns : 0);
}

const char *seg_strerror(int err)
{
	switch (-err) {
	case EPERM:
		return "not a private file of this user (must be a regular file, mode 0600)";
	case EPROTO:
		return "made by another version of pqshim (another layout); remove it "
		       "once no program uses it, or name another [shim] segment";
	default:
		return strerror(-err);
	}
}

int seg_release_pid(struct segment *seg, pid_t pid)
{
	int n = 0;
	for (int i = 0; i < SEG_MAX_PROCS; i++) {
		struct seg_proc *p = &seg->procs[i];
		uint32_t live = SLOT_LIVE;
		if (p->pid != pid || !__atomic_compare_exchange_n(&p->state, &live, SLOT_REAPING, 0,
		                                                  __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			continue;
		for (int j = 0; j < SEG_MAX_CONNS; j++) {
			struct seg_conn *c = &seg->conns[j];
			uint32_t cl = SLOT_LIVE;
			if (c->proc == (uint32_t)i && c->pid == pid
			    && __atomic_compare_exchange_n(&c->state, &cl, SLOT_REAPING, 0,
			                                   __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
				seg_conn_release(seg, j, 1);
		}
		seg_proc_release(seg, i);
		n++;
	}
	if (n)
		cap_audit(seg);
	return n;
}
