/*
 * test_segment.c - the shared segment: layout, creation races, claims,
 * totals that outlive processes, and the reaper (pid reuse included).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "segment.h"

/* The layout is a contract between builds: changing it means a new version. */
_Static_assert(sizeof(struct seg_totals) == 88, "seg_totals layout");
_Static_assert(sizeof(struct seg_proc) == 104, "seg_proc layout");
_Static_assert(sizeof(struct seg_conn) == 368, "seg_conn layout");
_Static_assert(offsetof(struct seg_header, totals) == 40, "header layout");
_Static_assert(offsetof(struct seg_conn, queries) % 8 == 0, "counters aligned");

static char name[64];

static int setup(void **state)
{
	(void)state;
	snprintf(name, sizeof name, "unit-%d", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char path[320];
	seg_path(name, path, sizeof path);
	unlink(path);
	return 0;
}

static void creates_private_segment(void **state)
{
	(void)state;
	struct segment s;
	assert_int_equal(seg_attach(&s, name, 0), -ENOENT);
	assert_int_equal(seg_attach(&s, name, 1), 0);
	assert_int_equal(s.hdr->version, SEG_VERSION);
	char path[320];
	struct stat st;
	seg_path(name, path, sizeof path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	seg_detach(&s);
	/* a file that others may write is not a segment of ours */
	chmod(path, 0644);
	assert_int_equal(seg_attach(&s, name, 1), -EPERM);
	chmod(path, 0600);
	/* another layout (another version's size) is refused, not misread */
	assert_int_equal(truncate(path, 4096), 0);
	assert_int_equal(seg_attach(&s, name, 1), -EPROTO);
	unlink(path);
	assert_int_equal(seg_attach(&s, name, 1), 0);
	seg_detach(&s);
}

/* Eight processes race to create it: all end up on one initialised segment. */
static void creation_race(void **state)
{
	(void)state;
	pid_t kids[8];
	for (int i = 0; i < 8; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			struct segment s;
			if (seg_attach(&s, name, 1) != 0)
				_exit(1);
			seg_add(&s.hdr->totals.queries, 1);
			_exit(0);
		}
	}
	for (int i = 0; i < 8; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	struct segment s;
	assert_int_equal(seg_attach(&s, name, 0), 0);
	assert_int_equal(s.hdr->totals.queries, 8);
	seg_detach(&s);
}

static void claim_release_fold(void **state)
{
	(void)state;
	struct segment s;
	assert_int_equal(seg_attach(&s, name, 1), 0);
	int c = seg_conn_claim(&s, 0);
	assert_true(c >= 0);
	assert_int_equal(s.conns[c].state, SLOT_CLAIMED);
	s.conns[c].queries = 7;
	s.conns[c].xacts = 3;
	__atomic_store_n(&s.conns[c].state, SLOT_LIVE, __ATOMIC_RELEASE);
	struct seg_conn copy;
	assert_int_equal(seg_conn_read(&s, c, &copy), 0);
	assert_int_equal(copy.queries, 7);
	uint64_t q = s.hdr->totals.queries;
	seg_conn_release(&s, c, 0);
	assert_int_equal(s.hdr->totals.queries, q + 7);
	assert_int_equal(s.hdr->totals.xacts, 3);
	assert_int_equal(seg_conn_read(&s, c, &copy), -1);

	/* a fork child's copy of an inherited connection: its counters fold,
	 * but the connect, close and leak are the parent's to count */
	uint64_t closes = s.hdr->totals.closes, leaked = s.hdr->totals.leaked;
	c = seg_conn_claim(&s, 0);
	s.conns[c].flags = CONN_INHERITED;
	s.conns[c].queries = 2;
	__atomic_store_n(&s.conns[c].state, SLOT_LIVE, __ATOMIC_RELEASE);
	seg_conn_release(&s, c, 1);
	assert_int_equal(s.hdr->totals.queries, q + 9);
	assert_int_equal(s.hdr->totals.closes, closes);
	assert_int_equal(s.hdr->totals.leaked, leaked);
	seg_detach(&s);
}

/* A process that dies holding records (kill -9: no clean-up of its own)
 * gives them back through the reaper, counters folded exactly once. */
static void reaps_killed_process(void **state)
{
	(void)state;
	struct segment s;
	assert_int_equal(seg_attach(&s, name, 1), 0);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t kid = fork();
	if (kid == 0) {
		int p = seg_proc_claim(&s);
		s.procs[p].pid = getpid();
		s.procs[p].starttime = seg_starttime(getpid());
		__atomic_store_n(&s.procs[p].state, SLOT_LIVE, __ATOMIC_RELEASE);
		for (int i = 0; i < 3; i++) {
			int c = seg_conn_claim(&s, 0);
			s.conns[c].proc = (uint32_t)p;
			s.conns[c].pid = getpid();
			s.conns[c].queries = 10;
			__atomic_store_n(&s.conns[c].state, SLOT_LIVE, __ATOMIC_RELEASE);
		}
		(void)!write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	char x;
	assert_int_equal(read(ready[0], &x, 1), 1);
	uint64_t before = s.hdr->totals.queries;
	assert_int_equal(seg_reap(&s), 0);           /* alive: nothing to reap */
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	assert_int_equal(seg_reap(&s), 1);
	assert_int_equal(seg_reap(&s), 0);           /* exactly once */
	assert_int_equal(s.hdr->totals.queries, before + 30);
	assert_int_equal(s.hdr->totals.leaked, 3);
	for (int i = 0; i < SEG_MAX_CONNS; i++)
		assert_true(s.conns[i].state != SLOT_LIVE || s.conns[i].pid != kid);
	seg_detach(&s);
}

/* Field 22 of /proc/self/stat, parsed independently of segment.c. */
static unsigned long long starttime_by_hand(void)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	char *p = strrchr(buf, ')') + 2;          /* field 3 */
	unsigned long long v = 0;
	for (int field = 3; field <= 22; field++) {
		v = strtoull(p, &p, 10);
		if (field == 3)
			v = 0, p = strchr(p, ' ');   /* the state letter */
		while (*p == ' ')
			p++;
		if (field == 3)
			continue;
	}
	return v;
}

/* A live pid with another start time is a reused pid: its records are dead. */
static void pid_reuse_is_not_life(void **state)
{
	(void)state;
	uint64_t mine = seg_starttime(getpid());
	assert_true(mine > 0);
	assert_int_equal(mine, starttime_by_hand());
	assert_true(seg_process_alive(getpid(), mine));
	assert_false(seg_process_alive(getpid(), mine + 1));
	assert_false(seg_process_alive(0, mine));

	/* Killed, not yet reaped by its parent: a zombie, and dead. */
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t kid = fork();
	if (kid == 0) {
		(void)!write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	char x;
	assert_int_equal(read(ready[0], &x, 1), 1);
	uint64_t st = seg_starttime(kid);
	assert_true(seg_process_alive(kid, st));
	kill(kid, SIGKILL);
	for (int i = 0; i < 1000 && seg_process_alive(kid, st); i++)
		usleep(1000);
	assert_false(seg_process_alive(kid, st));   /* still a zombie here */
	waitpid(kid, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(creates_private_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(creation_race, setup, teardown),
		cmocka_unit_test_setup_teardown(claim_release_fold, setup, teardown),
		cmocka_unit_test_setup_teardown(reaps_killed_process, setup, teardown),
		cmocka_unit_test(pid_reuse_is_not_life),
	};
	return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
