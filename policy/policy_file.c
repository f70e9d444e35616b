/*
 * policy_file.c - the policy file on disk: reading it without ever blocking
 * or reading without bound, telling a finished edit from one caught
 * half-way, the features this build refuses, the segment name a policy
 * uses, and what a broken file still says.
 *
 * Owns policy_load(), policy_unsupported(), policy_settle_look(),
 * policy_stat_same(), policy_segment_name() and policy_recover_*().  The
 * parser itself is policy.c.
 *
 * Invariants:
 *  - Every read of a policy file (policy_load() and the recovery of a broken
 *    one's segment and on_error) goes through read_whole(): opened with
 *    O_NONBLOCK, refused unless fstat says a regular file of at most
 *    POLICY_FILE_MAX bytes, read in one bounded pass, and refused when the
 *    file changed while it was read.  /dev/zero, a FIFO or a directory is an
 *    error at once, never a wait or a spin.
 *  - policy_settle_look() is pure: the caller gives it what stat() said and
 *    the clocks.
 *
 * How a partial write is told from a finished one.  `cat > policy`
 * truncates the file, then writes it (in one or several writes, maybe with
 * pauses); nothing in the file says "done".  A changed file is therefore
 * taken only once it has stayed unchanged (same inode, size, mtime and
 * ctime) for POLICY_SETTLE_MS: either the same stat was seen at a look at
 * least that long ago (the process's monotonic clock: always sound), or the
 * file's own change time is that old by the real-time clock (sound on a
 * local file system, where the kernel stamps it with the same clock; a
 * change time in the future is not trusted).  The reader re-checks after
 * reading (read_whole() compares fstat before and after, the shim stats the
 * path again) so that a write during the read is caught too.  A writer that
 * pauses longer than POLICY_SETTLE_MS in the middle cannot be told from a
 * finished one by anyone: the safe edit is to write a new file and rename it
 * over the old one (what editors and configuration managers do), and that
 * is what `pqshim check` and pqshim-policy(5) say.
 */
#include "policy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DERIVED_BASE_MAX 32     /* basename part of a derived segment name */

/* ------------------------------------------------------------------------ */
/* Reading a file, bounded                                                  */

int policy_stat_same(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev
	    && a->st_size == b->st_size
	    && a->st_mtim.tv_sec == b->st_mtim.tv_sec
	    && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
	    && a->st_ctim.tv_sec == b->st_ctim.tv_sec
	    && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec
	    && a->st_mode == b->st_mode && a->st_uid == b->st_uid;
}

/* Refuse what cannot be a policy, before reading a byte of it. */
static void refuse_what_is_not_a_policy(const char *path, const struct stat *st,
                                        bool check_owner, struct policy_errors *errs)
{
	if (S_ISDIR(st->st_mode)) {
		policy_add_error(errs, path, 0, "refused: a directory, not a policy file");
		return;
	}
	if (!S_ISREG(st->st_mode)) {
		policy_add_error(errs, path, 0, "refused: not a regular file");
		return;
	}
	/* Whoever can write the policy controls every program that uses it. */
	if (check_owner && (st->st_mode & (S_IWGRP | S_IWOTH)))
		policy_add_error(errs, path, 0, "refused: group- or world-writable (mode %04o); "
		                 "chmod go-w %s", (unsigned)(st->st_mode & 07777), path);
	if (check_owner && st->st_uid != 0 && st->st_uid != geteuid())
		policy_add_error(errs, path, 0, "refused: owned by uid %u, not by you or root",
		                 (unsigned)st->st_uid);
	if (st->st_size > POLICY_FILE_MAX)
		policy_add_error(errs, path, 0, "refused: larger than 1 MiB (%lld bytes)",
		                 (long long)st->st_size);
}

static int read_fd(const char *path, int fd, bool check_owner, char **buf,
                   size_t *len, struct policy_errors *errs)
{
	struct stat before, after;
	char why[128];
	size_t want, got = 0;

	if (fstat(fd, &before) != 0) {
		policy_add_error(errs, path, 0, "cannot read: %s",
		                 strerror_r(errno, why, sizeof why));
		return -1;
	}
	refuse_what_is_not_a_policy(path, &before, check_owner, errs);
	if (errs->count > 0)
		return -1;

	want = (size_t)before.st_size;
	*buf = malloc(want + 1);
	if (!*buf) {
		policy_add_error(errs, path, 0, "cannot read: out of memory");
		return -1;
	}
	/* Read one byte more than fstat said, to notice a file still growing. */
	while (got < want + 1) {
		ssize_t r = read(fd, *buf + got, want + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			policy_add_error(errs, path, 0, "cannot read: %s",
			                 strerror_r(errno, why, sizeof why));
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	/* Grown, shrunk or rewritten meanwhile: what was read is no policy. */
	if (got != want || fstat(fd, &after) != 0 || !policy_stat_same(&before, &after)) {
		policy_add_error(errs, path, 0, "changed while being read; try again "
		                 "(edit it by writing a new file and renaming it over this one)");
		return -1;
	}
	*len = got;
	return 0;
}

/*
 * The whole of the file at `path` in *buf (malloc'ed, the caller frees it
 * even on error), or -1 with the reason in *errs.  Never blocks: symlinks
 * are followed (a policy linked into place is common) and the checks are
 * made on what was opened; O_NONBLOCK keeps a FIFO from hanging the open
 * before fstat can refuse it, and does nothing to a regular file.
 */
static int read_whole(const char *path, bool check_owner, char **buf, size_t *len,
                      struct policy_errors *errs)
{
	char why[128];
	int fd, rc;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		policy_add_error(errs, path, 0, "cannot open: %s",
		                 strerror_r(errno, why, sizeof why));
		return -1;
	}
	rc = read_fd(path, fd, check_owner, buf, len, errs);
	close(fd);
	return rc;
}

int policy_load(const char *path, struct policy *out, struct policy_errors *errs)
{
	struct policy_errors scratch;
	struct policy p;
	char *buf;
	size_t len;
	int rc;

	if (!errs)
		errs = &scratch;
	errs->count = 0;
	if (!path || !*path) {
		policy_add_error(errs, "policy", 0, "no policy file named");
		return -1;
	}
	rc = read_whole(path, true, &buf, &len, errs);
	if (rc == 0)
		rc = policy_parse(path, buf, len, &p, errs);
	free(buf);
	if (rc == 0)
		rc = policy_unsupported(&p, path, errs);
	if (rc == 0 && out)
		*out = p;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* What this build refuses                                                  */

int policy_unsupported(const struct policy *p, const char *name,
                       struct policy_errors *errs)
{
	int before = errs->count;

	if (!POLICY_HAS_CLUSTER && p->scope == SCOPE_CLUSTER)
		policy_add_error(errs, name, p->scope_line,
		                 "scope = cluster is not supported by this build yet");
	for (int i = 0; !POLICY_HAS_LANES && i < p->nlanes; i++)
		policy_add_error(errs, name, p->lanes[i].line,
		                 "[lane \"%s\"]: lanes are not supported by this build yet",
		                 p->lanes[i].name);
	return errs->count > before ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Telling a finished edit from one caught half-way                          */

static int64_t ns_of(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

enum policy_settle_verdict policy_settle_look(struct policy_settle *s,
                                              const struct stat *applied,
                                              const struct stat *st, uint64_t mono_ns,
                                              int64_t real_ns, uint64_t *wait_ms)
{
	const int64_t settle_ns = (int64_t)POLICY_SETTLE_MS * 1000000;
	int64_t quiet = 0, changed, by_clock;

	if (policy_stat_same(st, applied)) {
		s->seen_ns = 0;
		return POLICY_FILE_SAME;
	}
	if (s->seen_ns != 0 && policy_stat_same(st, &s->seen)) {
		quiet = (int64_t)(mono_ns - s->seen_ns);
	} else {
		s->seen = *st;
		s->seen_ns = mono_ns ? mono_ns : 1;
	}
	/* The file's own last change, trusted when it is not in the future. */
	changed = ns_of(&st->st_mtim) > ns_of(&st->st_ctim) ? ns_of(&st->st_mtim)
	                                                     : ns_of(&st->st_ctim);
	by_clock = real_ns - changed;
	if (by_clock > quiet)
		quiet = by_clock;
	if (quiet >= settle_ns)
		return POLICY_FILE_SETTLED;
	if (wait_ms)
		*wait_ms = (uint64_t)((settle_ns - quiet + 999999) / 1000000);
	return POLICY_FILE_SETTLING;
}

/* ------------------------------------------------------------------------ */
/* Segment names                                                            */

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/*
 * Make `path` absolute without touching symlinks: prefix the working
 * directory if relative, then drop "." and "//" and fold ".." by text.
 * Symlinks are deliberately not resolved: re-pointing a symlinked policy
 * must not move the processes that use it to another segment.  False if
 * it does not fit.
 */
bool policy_absolute_path(const char *path, char *out, size_t size)
{
	char joined[PATH_MAX * 2];
	size_t o = 0;
	const char *p;

	if (path[0] == '/') {
		if (strlen(path) >= sizeof joined)
			return false;
		strcpy(joined, path);
	} else {
		char cwd[PATH_MAX];
		int n;

		if (!getcwd(cwd, sizeof cwd))
			return false;
		n = snprintf(joined, sizeof joined, "%s/%s", cwd, path);
		if (n < 0 || (size_t)n >= sizeof joined)
			return false;
	}

	for (p = joined; *p;) {
		const char *end;
		size_t n;

		while (*p == '/')
			p++;
		end = strchrnul(p, '/');
		n = (size_t)(end - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* nothing to add */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;            /* the '/' before the dropped component */
		} else {
			if (o + 1 + n + 1 > size)
				return false;
			out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p = end;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return true;
}

static void copy_truncated(char *buf, size_t size, const char *s)
{
	snprintf(buf, size, "%s", s);
}

void policy_segment_name(const struct policy *p, const char *path,
                         char *buf, size_t size)
{
	char absolute[PATH_MAX], base[DERIVED_BASE_MAX + 1];
	const char *full = path, *b, *dot;
	size_t bn, i;

	if (!buf || size == 0)
		return;
	if (p && p->segment[0] != '\0') {
		copy_truncated(buf, size, p->segment);
		return;
	}
	if (!path || !*path) {
		copy_truncated(buf, size, "default");
		return;
	}
	if (policy_absolute_path(path, absolute, sizeof absolute))
		full = absolute;

	/* The basename without its extension: "/etc/app/web.ini" -> "web". */
	b = strrchr(full, '/');
	b = b ? b + 1 : full;
	dot = strrchr(b, '.');
	bn = (dot && dot != b) ? (size_t)(dot - b) : strlen(b);
	if (bn > DERIVED_BASE_MAX)
		bn = DERIVED_BASE_MAX;
	for (i = 0; i < bn; i++)
		base[i] = policy_is_segment_char(b[i]) ? b[i] : '_';
	base[bn] = '\0';
	if (bn == 0)
		strcpy(base, "policy");

	snprintf(buf, size, "p-%s-%08x", base, (unsigned)fnv1a(full));
}


/* ------------------------------------------------------------------------ */
/* What a broken policy still says                                          */

/* The first value matching `format` (one %s-style conversion) on a line of
 * a file that may not parse as a whole, read under read_whole()'s bounds.
 * 1 when found. */
static int recover_value(const char *path, const char *format, char *out)
{
	struct policy_errors ignored = { 0 };
	char *buf = NULL, line[512];
	size_t len, pos = 0;
	int found = 0;

	if (path && *path && read_whole(path, false, &buf, &len, &ignored) == 0) {
		while (!found && pos < len) {
			const char *nl = memchr(buf + pos, '\n', len - pos);
			size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;

			snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1),
			         buf + pos);
			found = sscanf(line, format, out) == 1;
			pos += n + 1;
		}
	}
	free(buf);
	return found;
}

/* The value of a `segment = NAME` line of a policy that does not load: a
 * broken policy still names the segment its programs use (the shim and
 * the tool must agree on it, or `pqshim stat` could not show the error). */
void policy_recover_segment(const char *path, char *out, size_t size)
{
	char name[65];
	if (recover_value(path, " segment = %64[A-Za-z0-9._-]", name))
		snprintf(out, size, "%s", name);
}

/* Likewise `on_error`: a policy that does not load still says what to do
 * about it.  Anything but a clear "fail-open" means fail-closed. */
enum onerror_mode policy_recover_on_error(const char *path)
{
	char word[32];
	if (recover_value(path, " on_error = %31[a-z-]", word) && strcmp(word, "fail-open") == 0)
		return ONERROR_FAIL_OPEN;
	return ONERROR_FAIL_CLOSED;
}
