/*
 * segment.c - create, verify, map, claim, release and reap (see segment.h).
 *
 * Shared by the shim and the tool.  Claims and releases are single CASes on
 * a record's state word: nothing on those paths allocates or locks.
 * Attaching (once per process) opens, verifies and maps; it may look up
 * user and group names for its messages.
 */
#include "segment.h"
#include "procid.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"

static size_t seg_size(uint32_t procs, uint32_t conns)
{
	size_t sz = sizeof(struct seg_header)
	          + (size_t)procs * sizeof(struct seg_proc)
	          + (size_t)conns * sizeof(struct seg_conn);
	long page = sysconf(_SC_PAGESIZE);
	return (sz + (size_t)page - 1) & ~((size_t)page - 1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void touch(struct segment *seg)
{
	__atomic_store_n(&seg->hdr->last_used_ns, now_ns(), __ATOMIC_RELAXED);
}

int seg_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > SEG_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		      || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void seg_path(const char *name, uint32_t gid, char *buf, size_t size)
{
	if (gid == SEG_NO_GROUP)
		snprintf(buf, size, SHM_DIR "/pqshim.%u.%s", (unsigned)geteuid(), name);
	else
		snprintf(buf, size, SHM_DIR "/pqshim.g%u.%s", (unsigned)gid, name);
}

static void seg_layout(struct segment *seg, void *base, size_t size, uint32_t procs,
                       uint32_t conns)
{
	seg->hdr = base;
	seg->procs = (struct seg_proc *)((char *)base + sizeof(struct seg_header));
	seg->conns = (struct seg_conn *)(seg->procs + procs);
	seg->size = size;
	seg->max_procs = procs;
	seg->max_conns = conns;
}

/* ---- who is who ---------------------------------------------------------- */

/* "alice (uid 1001)" / "app (gid 1002)", or the bare number. */
static void id_name(int group, unsigned id, char *buf, size_t size)
{
	char tmp[4096];
	const char *name = NULL;
	if (group) {
		struct group gr, *res = NULL;
		if (getgrgid_r((gid_t)id, &gr, tmp, sizeof tmp, &res) == 0 && res)
			name = res->gr_name;
	} else {
		struct passwd pw, *res = NULL;
		if (getpwuid_r((uid_t)id, &pw, tmp, sizeof tmp, &res) == 0 && res)
			name = res->pw_name;
	}
	if (name)
		snprintf(buf, size, "%s (%s %u)", name, group ? "gid" : "uid", id);
	else
		snprintf(buf, size, "%s %u", group ? "gid" : "uid", id);
}

static void user_name(uid_t uid, char *buf, size_t size) { id_name(0, (unsigned)uid, buf, size); }
static void group_name(gid_t gid, char *buf, size_t size) { id_name(1, (unsigned)gid, buf, size); }

/* Is uid a member of gid (its primary group, or listed in it)?  Root is
 * taken as one: it may make a segment for a group's services. */
static int user_in_group(uid_t uid, gid_t gid)
{
	if (uid == 0)
		return 1;
	struct passwd pw, *pres = NULL;
	char pbuf[1024];
	if (getpwuid_r(uid, &pw, pbuf, sizeof pbuf, &pres) != 0 || !pres)
		return 0;
	if (pres->pw_gid == gid)
		return 1;
	struct group gr, *gres = NULL;
	char gbuf[16384];
	if (getgrgid_r(gid, &gr, gbuf, sizeof gbuf, &gres) != 0 || !gres)
		return 0;
	for (char **m = gres->gr_mem; *m; m++)
		if (!strcmp(*m, pres->pw_name))
			return 1;
	return 0;
}

/* Is the calling process in gid (effective or supplementary)? */
static int self_in_group(gid_t gid)
{
	if (geteuid() == 0 || getegid() == gid)
		return 1;               /* root may make and use any group's */
	gid_t list[256];
	int n = getgroups(256, list);
	for (int i = 0; i < n; i++)
		if (list[i] == gid)
			return 1;
	return 0;
}

static const char *kind_word(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:  return "a regular file";
	case S_IFLNK:  return "a symlink";
	case S_IFIFO:  return "a FIFO";
	case S_IFDIR:  return "a directory";
	case S_IFSOCK: return "a socket";
	case S_IFCHR:  return "a character device";
	case S_IFBLK:  return "a block device";
	default:       return "a special file";
	}
}

/* "owner mallory (uid 1001), group mallory (gid 1001), mode 0644, a FIFO" */
static void describe_found(const struct stat *st, char *buf, size_t size)
{
	char u[96], gname[96];
	user_name(st->st_uid, u, sizeof u);
	group_name(st->st_gid, gname, sizeof gname);
	snprintf(buf, size, "owner %s, group %s, mode %04o, %s", u, gname,
	         (unsigned)(st->st_mode & 07777), kind_word(st->st_mode));
}

/* The file at path, found with this lstat, is not one we may use. */
static enum seg_verdict refuse(const char *path, const struct stat *st, const char *expected,
                               char *why, size_t size)
{
	char found[320];
	describe_found(st, found, sizeof found);
	snprintf(why, size, "segment %s refused: %s; expected %s", path, found, expected);
	return SEG_REFUSED;
}

/* What the file must be: "owner alice (uid 1000), mode 0600, a regular
 * file" or "group app (gid 1002), mode 0660, owned by a member". */
static void describe_expected(uint32_t gid, char *buf, size_t size)
{
	char who[96];
	if (gid == SEG_NO_GROUP) {
		user_name(geteuid(), who, sizeof who);
		snprintf(buf, size, "owner %s, mode 0600, a regular file", who);
	} else {
		group_name(gid, who, sizeof who);
		snprintf(buf, size, "group %s, mode 0660, a regular file owned by a member", who);
	}
}

static int ownership_ok(const struct stat *st, uint32_t gid)
{
	if (!S_ISREG(st->st_mode))
		return 0;
	if (gid == SEG_NO_GROUP)
		return st->st_uid == geteuid() && (st->st_mode & 07777) == 0600;
	return st->st_gid == gid && (st->st_mode & 07777) == 0660
	    && user_in_group(st->st_uid, gid);
}

/* ---- creating ------------------------------------------------------------ */

static void init_header(void *base, uint32_t procs, uint32_t conns, uint32_t gid)
{
	struct seg_header *h = base;
	h->version = SEG_VERSION;
	h->header_size = sizeof(struct seg_header);
	h->proc_size = sizeof(struct seg_proc);
	h->conn_size = sizeof(struct seg_conn);
	h->max_procs = procs;
	h->max_conns = conns;
	h->created_ns = h->last_used_ns = now_ns();
	h->owner_uid = (uint32_t)geteuid();
	h->group_gid = gid;
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
}

/* Create a fully initialised segment, with its group and mode, under a
 * private name, then link it into place: link() fails if another process
 * won the race, and then we use theirs (after verifying it like any). */
static int seg_create(const char *path, uint32_t gid, uint32_t procs, uint32_t conns)
{
	char tmp[192];
	int fd = -1;
	for (int tries = 0; fd < 0 && tries < 8; tries++) {
		/* The directory is world-writable: a name someone took is skipped. */
		snprintf(tmp, sizeof tmp, "%s.tmp.%d.%lx", path, (int)getpid(),
		         (unsigned long)(clock_ticks() ^ ((uint64_t)tries << 40)));
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	int err = 0;
	size_t size = seg_size(procs, conns);
	if ((gid != SEG_NO_GROUP && (fchown(fd, (uid_t)-1, gid) != 0 || fchmod(fd, 0660) != 0))
	    || (gid == SEG_NO_GROUP && fchmod(fd, 0600) != 0)
	    || ftruncate(fd, (off_t)size) != 0) {
		err = -errno;
		goto out;
	}
	/* Every page now, or no segment: a sparse file on a full tmpfs would
	 * be linked into place and fail page by page (SIGBUS) for everyone. */
	if ((err = -posix_fallocate(fd, 0, (off_t)size)) != 0)
		goto out;
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		err = -errno;
		goto out;
	}
	init_header(base, procs, conns, gid);
	munmap(base, size);
	if (link(tmp, path) != 0 && errno != EEXIST)
		err = -errno;
out:
	close(fd);
	unlink(tmp);
	return err;
}

/* ---- attaching ----------------------------------------------------------- */

static int header_layout_ok(const struct seg_header *h)
{
	return h->magic == SEG_MAGIC && h->version == SEG_VERSION
	    && h->header_size == sizeof(struct seg_header)
	    && h->proc_size == sizeof(struct seg_proc)
	    && h->conn_size == sizeof(struct seg_conn)
	    && h->max_procs >= 1 && h->max_procs <= SEG_PROCS_LIMIT
	    && h->max_conns >= 1 && h->max_conns <= SEG_CONNS_LIMIT;
}

/* Open, verify and map path.  ENOENT -> SEG_MISSING. */
static enum seg_verdict map_file(struct segment *seg, const char *path, uint32_t gid,
                                 char *why, size_t size)
{
	char expected[256];
	struct stat st;

	/* O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: a FIFO
	 * squatting the name does not block the open. */
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT) {
			snprintf(why, size, "segment %s does not exist", path);
			return SEG_MISSING;
		}
		describe_expected(gid, expected, sizeof expected);
		if (lstat(path, &st) == 0 && (e == ELOOP || e == EISDIR || e == EACCES || e == EPERM
		                              || e == ENXIO || !ownership_ok(&st, gid)))
			return refuse(path, &st, expected, why, size);
		snprintf(why, size, "segment %s cannot be opened: %s", path, strerror(e));
		return SEG_FAILED;
	}
	if (fstat(fd, &st) != 0 || !ownership_ok(&st, gid)) {
		describe_expected(gid, expected, sizeof expected);
		close(fd);
		return refuse(path, &st, expected, why, size);
	}
	struct seg_header h;
	memset(&h, 0, sizeof h);
	if (st.st_size < (off_t)sizeof h) {
		close(fd);
		snprintf(why, size, "segment %s refused: %lld bytes, shorter than a segment's header: "
		         "truncated, or not a pqshim segment; remove it (pqshim rm) once no program "
		         "uses it", path, (long long)st.st_size);
		return SEG_REFUSED;
	}
	if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || !header_layout_ok(&h)) {
		close(fd);
		snprintf(why, size, "segment %s refused: not a pqshim segment of this version "
		         "(layout %u, size %lld bytes); remove it (pqshim rm) once no program uses "
		         "it, or name another [shim] segment", path,
		         h.magic == SEG_MAGIC ? h.version : 0, (long long)st.st_size);
		return SEG_REFUSED;
	}
	size_t want = seg_size(h.max_procs, h.max_conns);
	if ((size_t)st.st_size != want) {
		close(fd);
		snprintf(why, size, "segment %s refused: %lld bytes where its tables (%u processes, "
		         "%u connections) take %zu: truncated or overwritten; remove it (pqshim rm) "
		         "once no program uses it", path, (long long)st.st_size, h.max_procs,
		         h.max_conns, want);
		return SEG_REFUSED;
	}
	void *base = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (base == MAP_FAILED) {
		snprintf(why, size, "segment %s cannot be mapped: %s", path, strerror(e));
		return SEG_FAILED;
	}
	/* The sizes we bound our loops by are the ones we checked the file
	 * against, never re-read from the (shared, writable) header. */
	seg_layout(seg, base, want, h.max_procs, h.max_conns);
	seg->dev = st.st_dev;
	seg->ino = st.st_ino;
	snprintf(seg->path, sizeof seg->path, "%s", path);
	return SEG_OK;
}

enum seg_verdict seg_attach_path(struct segment *seg, const char *path, uint32_t gid,
                                 char *why, size_t size)
{
	memset(seg, 0, sizeof *seg);
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	/* pqshim.<uid>.<name> or pqshim.g<gid>.<name>: the name follows the
	 * second dot. */
	const char *dot = strchr(base, '.');
	dot = dot ? strchr(dot + 1, '.') : NULL;
	snprintf(seg->name, sizeof seg->name, "%s", dot ? dot + 1 : base);
	return map_file(seg, path, gid, why, size);
}

static int resolve_group(const char *group, uint32_t *gid, char *why, size_t size)
{
	*gid = SEG_NO_GROUP;
	if (!group || !*group)
		return 0;
	struct group gr, *res = NULL;
	char tmp[16384];
	if (getgrnam_r(group, &gr, tmp, sizeof tmp, &res) != 0 || !res) {
		snprintf(why, size, "[shim] group = %s: no such group", group);
		return -1;
	}
	*gid = (uint32_t)res->gr_gid;
	if (!self_in_group(res->gr_gid)) {
		char u[96];
		user_name(geteuid(), u, sizeof u);
		snprintf(why, size, "[shim] group = %s: %s is not a member of it", group, u);
		return -1;
	}
	return 0;
}

enum seg_verdict seg_attach(struct segment *seg, const struct seg_want *want,
                            char *why, size_t size)
{
	uint32_t gid;
	char path[128];

	memset(seg, 0, sizeof *seg);
	why[0] = '\0';
	if (!seg_name_valid(want->name)) {
		snprintf(why, size, "bad segment name \"%s\"", want->name ? want->name : "");
		return SEG_REFUSED;
	}
	if (resolve_group(want->group, &gid, why, size) != 0)
		return SEG_REFUSED;
	seg_path(want->name, gid, path, sizeof path);
	uint32_t procs = want->max_procs ? want->max_procs : SEG_PROCS_DEFAULT;
	uint32_t conns = want->max_conns ? want->max_conns : SEG_CONNS_DEFAULT;
	enum seg_verdict v = map_file(seg, path, gid, why, size);
	if (v == SEG_MISSING && want->create) {
		if (procs > SEG_PROCS_LIMIT || conns > SEG_CONNS_LIMIT) {
			snprintf(why, size, "segment %s not created: max_processes = %u, max_tracked "
			         "= %u exceed what a segment holds (%u, %u)", path, procs, conns,
			         SEG_PROCS_LIMIT, SEG_CONNS_LIMIT);
			return SEG_FAILED;
		}
		int err = seg_create(path, gid, procs, conns);
		if (err == -ENOSPC) {
			snprintf(why, size, "segment %s cannot be created: %s (/dev/shm is full: the "
			         "segment needs %zu bytes; free some, or lower [shim] max_processes, "
			         "max_tracked)", path, strerror(-err), seg_size(procs, conns));
			return SEG_FAILED;
		}
		if (err) {
			snprintf(why, size, "segment %s cannot be created: %s", path, strerror(-err));
			return SEG_FAILED;
		}
		v = map_file(seg, path, gid, why, size);
	}
	snprintf(seg->name, sizeof seg->name, "%s", want->name);
	if (v != SEG_OK)
		return v;
	if (seg->max_procs != procs || seg->max_conns != conns) {
		snprintf(why, size, "segment %s was made with max_processes = %u, max_tracked = %u; "
		         "the policy says %u, %u: the segment's sizes stay in force until it is "
		         "removed (pqshim rm %s, once no program uses it)", path, seg->max_procs,
		         seg->max_conns, procs, conns, want->name);
		return SEG_OTHER_SIZE;
	}
	return SEG_OK;
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
	for (uint32_t i = 0; i < seg->max_procs; i++)
		if (claim(&seg->procs[i].state, &seg->procs[i].gen)) {
			__atomic_store_n(&seg->procs[i].exec_seq, 0, __ATOMIC_RELEASE);
			touch(seg);
			return (int)i;
		}
	return -1;
}

int seg_conn_claim(struct segment *seg, uint32_t proc)
{
	/* Start at a per-process offset so that processes don't all fight over
	 * the first free records. */
	pid_t pid = getpid();
	unsigned n = seg->max_conns;
	unsigned start = ((unsigned)pid * 2654435761u) % n;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (start + k) % n;
		struct seg_conn *c = &seg->conns[i];
		if (__atomic_load_n(&c->state, __ATOMIC_RELAXED) != SLOT_FREE)
			continue;
		/* A free record names no owner (pid 0, cleared on release), so
		 * the reaper leaves it alone until the winner writes its own. */
		if (claim(&c->state, &c->gen)) {
			__atomic_store_n(&c->pid, pid, __ATOMIC_RELAXED);
			__atomic_store_n(&c->proc, proc, __ATOMIC_RELAXED);
			memset(c->hold, 0, sizeof c->hold);
			touch(seg);
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
	touch(seg);
}

void seg_proc_release(struct segment *seg, int idx)
{
	struct seg_proc *p = &seg->procs[idx];
	__atomic_fetch_add(&p->gen, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&p->state, SLOT_FREE, __ATOMIC_RELEASE);
	touch(seg);
}

/* The exec lock's byte of record idx: far past the drainer's, at offset uid. */
static struct flock exec_lock(short type, uint32_t idx)
{
	struct flock l = { .l_type = type, .l_whence = SEEK_SET,
	                   .l_start = ((off_t)1 << 40) + (off_t)idx, .l_len = 1 };
	return l;
}

int seg_proc_exec_begin(struct segment *seg, int idx)
{
	int fd = open(seg->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct flock l = exec_lock(F_WRLCK, (uint32_t)idx);
	if (fd >= 0 && fcntl(fd, F_OFD_SETLK, &l) != 0) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0)   /* locked first: an odd exec_seq always has its lock until exec */
		__atomic_fetch_add(&seg->procs[idx].exec_seq, 1, __ATOMIC_SEQ_CST);
	return fd;
}

void seg_proc_exec_end(struct segment *seg, int idx, int fd)
{
	if (fd < 0)
		return;
	__atomic_fetch_add(&seg->procs[idx].exec_seq, 1, __ATOMIC_SEQ_CST);   /* even, then unlock */
	close(fd);
}

/* Record idx's process is in exec() and its lock is gone with the image,
 * while the same exec_seq stands (a failed exec's end changes it first). */
static int proc_execed(const struct segment *seg, uint32_t idx)
{
	const struct seg_proc *p = &seg->procs[idx];
	uint32_t seq = __atomic_load_n(&p->exec_seq, __ATOMIC_SEQ_CST);
	if (!(seq & 1))
		return 0;
	int fd = open(seg->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return 0;
	struct flock l = exec_lock(F_WRLCK, idx);
	int gone = fcntl(fd, F_OFD_GETLK, &l) == 0 && l.l_type == F_UNLCK
	           && __atomic_load_n(&p->exec_seq, __ATOMIC_SEQ_CST) == seq;
	close(fd);
	return gone;
}

int seg_proc_alive(const struct segment *seg, uint32_t idx)
{
	const struct seg_proc *p = &seg->procs[idx];
	return procid_alive(p->pid, p->starttime) && !proc_execed(seg, idx);
}

int seg_pid_alive(const struct segment *seg, pid_t pid, uint64_t starttime)
{
	if (pid <= 0 || !procid_alive(pid, starttime))
		return 0;
	for (uint32_t i = 0; i < seg->max_procs; i++) {
		const struct seg_proc *p = &seg->procs[i];
		if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == SLOT_LIVE && p->pid == pid
		    && p->starttime == starttime && !proc_execed(seg, i))
			return 1;
	}
	return 0;
}

int seg_reap(struct segment *seg)
{
	int reaped = 0;
	for (uint32_t i = 0; i < seg->max_procs; i++) {
		struct seg_proc *p = &seg->procs[i];
		if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != SLOT_LIVE)
			continue;
		/* Judge the owner we read, and take the record only if it is
		 * still that owner's: it may have exited and been replaced
		 * by a new process while we looked. */
		uint32_t gen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
		pid_t pid = p->pid;
		uint64_t start = p->starttime;
		if (procid_alive(pid, start) && !proc_execed(seg, i))
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
		for (uint32_t j = 0; j < seg->max_conns; j++) {
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
	/* The dead may have held slots of the cap: the caller has them
	 * counted again from the living (cap_reap). */
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

int seg_proc_any_live(const struct segment *seg, int except, uid_t uid)
{
	for (uint32_t i = 0; i < seg->max_procs; i++) {
		const struct seg_proc *p = &seg->procs[i];
		if ((int)i != except && __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == SLOT_LIVE
		    && (uid == (uid_t)-1 || p->uid == uid) && seg_proc_alive(seg, i))
			return 1;
	}
	return 0;
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

int seg_release_pid(struct segment *seg, pid_t pid)
{
	int n = 0;
	for (uint32_t i = 0; i < seg->max_procs; i++) {
		struct seg_proc *p = &seg->procs[i];
		uint32_t live = SLOT_LIVE;
		if (p->pid != pid || !__atomic_compare_exchange_n(&p->state, &live, SLOT_REAPING, 0,
		                                                  __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			continue;
		for (uint32_t j = 0; j < seg->max_conns; j++) {
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
	return n;       /* the caller recounts the cap (cap_release_pid) */
}

void seg_full_message(const struct segment *seg, int procs, char *buf, size_t size)
{
	snprintf(buf, size, "segment %s has no free %s record (%s = %u): raise [shim] %s; a new "
	         "size takes effect when the segment is made again (pqshim rm %s once no "
	         "program uses it)", seg->name, procs ? "process" : "connection",
	         procs ? "max_processes" : "max_tracked", procs ? seg->max_procs : seg->max_conns,
	         procs ? "max_processes" : "max_tracked", seg->name);
}

/* ---- a segment truncated under us ---------------------------------------- */

/*
 * A file that shrinks under a MAP_SHARED mapping makes every access past
 * its new end raise SIGBUS, which kills a program by default.  We keep the
 * range of the one segment this process guards; a fault inside it swaps
 * the whole mapping for private zeroed memory (MAP_FIXED: atomic for the
 * other threads, who see either mapping) and returns, so the faulting
 * instruction runs again on memory that exists.  The cap in that memory
 * is full (each semaphore at max 1, count 1), so nothing new is admitted
 * until the shim, told by on_damage, acts on the policy's on_error.
 */
static struct {
	char *base;
	size_t size;
	void (*on_damage)(void);
	int damaged;                 /* atomic */
	struct sigaction previous;
} guard;

/* Async-signal-safe: mmap and plain stores. */
static int quarantine(void)
{
	if (__atomic_load_n(&guard.damaged, __ATOMIC_ACQUIRE))
		return 0;
	void *m = mmap(guard.base, guard.size, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	struct seg_header *h = (struct seg_header *)guard.base;
	for (int k = 0; k < CAP_SEMS; k++) {
		h->cap.sems[k].max = 1;
		h->cap.sems[k].word = 1;
	}
	__atomic_store_n(&guard.damaged, 1, __ATOMIC_RELEASE);
	if (guard.on_damage)
		guard.on_damage();
	return 0;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	/* Only a fault the kernel raised (si_code > 0: not kill() or raise())
	 * at an address inside the mapping is ours. */
	char *a = si && si->si_code > 0 ? (char *)si->si_addr : NULL;
	if (guard.base && a >= guard.base && a < guard.base + guard.size && quarantine() == 0)
		return;
	/* Not ours: what the program wanted.  For SIG_DFL/SIG_IGN put its
	 * action back and return: the fault happens again and takes it. */
	if (guard.previous.sa_flags & SA_SIGINFO) {
		guard.previous.sa_sigaction(sig, si, uc);
	} else if (guard.previous.sa_handler != SIG_DFL && guard.previous.sa_handler != SIG_IGN) {
		guard.previous.sa_handler(sig);
	} else {
		struct sigaction dfl;
		memset(&dfl, 0, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGBUS, &dfl, NULL);
	}
}

void seg_guard(struct segment *seg, void (*on_damage)(void))
{
	if (!seg->hdr || guard.base)
		return;
	guard.base = (char *)seg->hdr;
	guard.size = seg->size;
	guard.on_damage = on_damage;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &guard.previous);
}

enum seg_verdict seg_check(struct segment *seg, char *why, size_t size)
{
	if (!seg->hdr)
		return SEG_OK;
	int guarded = guard.base == (char *)seg->hdr;
	if (guarded && __atomic_load_n(&guard.damaged, __ATOMIC_ACQUIRE)) {
		snprintf(why, size, "segment %s was truncated under this process: the cap cannot "
		         "be enforced", seg->path);
		return SEG_DAMAGED;
	}
	struct stat st;
	if (stat(seg->path, &st) != 0 || st.st_ino != seg->ino || st.st_dev != seg->dev) {
		snprintf(why, size, "segment %s was removed or replaced while in use: processes "
		         "started since share another cap", seg->path);
		return SEG_MISSING;
	}
	if ((size_t)st.st_size < seg->size) {
		/* Shrunk: take the mapping away before anything touches the
		 * missing pages (seg_guard's handler does the same on a fault). */
		if (guarded)
			quarantine();
		snprintf(why, size, "segment %s was truncated under this process (%lld of %zu "
		         "bytes): the cap cannot be enforced", seg->path, (long long)st.st_size,
		         seg->size);
		return SEG_DAMAGED;
	}
	return SEG_OK;
}
