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
#include "procid.h"

#include <sys/mman.h>

/* The layout is a contract between builds: changing it means a new version. */
_Static_assert(sizeof(struct seg_totals) == 88, "seg_totals layout");
_Static_assert(sizeof(struct seg_proc) == 112, "seg_proc layout");
_Static_assert(sizeof(struct seg_conn) == 368, "seg_conn layout");
_Static_assert(offsetof(struct seg_header, totals) == 40, "header layout");
_Static_assert(offsetof(struct seg_conn, queries) % 8 == 0, "counters aligned");

static char name[64];
static char why[SEG_ERROR_MAX];

static int attach_sized(struct segment *s, int create, uint32_t procs, uint32_t conns)
{
	struct seg_want w = { name, NULL, procs, conns, create };
	return (int)seg_attach(s, &w, why, sizeof why);
}

static int attach(struct segment *s, int create)
{
	return attach_sized(s, create, 0, 0);
}

static void path_of(char *buf, size_t size)
{
	seg_path(name, SEG_NO_GROUP, buf, size);
}

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
	path_of(path, sizeof path);
	unlink(path);
	return 0;
}

static void creates_private_segment(void **state)
{
	(void)state;
	struct segment s;
	assert_int_equal(attach(&s, 0), SEG_MISSING);
	assert_int_equal(attach(&s, 1), SEG_OK);
	assert_int_equal(s.hdr->version, SEG_VERSION);
	char path[320];
	struct stat st;
	path_of(path, sizeof path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	seg_detach(&s);
	/* a file that others may write is not a segment of ours */
	chmod(path, 0644);
	assert_int_equal(attach(&s, 1), SEG_REFUSED);
	assert_non_null(strstr(why, "mode 0644"));
	assert_null(s.hdr);
	chmod(path, 0600);
	/* another layout (another version's size) is refused, not misread */
	assert_int_equal(truncate(path, 4096), 0);
	assert_int_equal(attach(&s, 1), SEG_REFUSED);
	assert_non_null(strstr(why, "pqshim rm"));
	unlink(path);
	/* a symlink or a FIFO squatting the name is refused, never followed
	 * or blocked on */
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_equal(attach(&s, 1), SEG_REFUSED);
	assert_non_null(strstr(why, "a symlink"));
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(attach(&s, 1), SEG_REFUSED);
	assert_non_null(strstr(why, "a FIFO"));
	unlink(path);
	assert_int_equal(attach(&s, 1), SEG_OK);
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
			if (attach(&s, 1) != SEG_OK)
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
	assert_int_equal(attach(&s, 0), SEG_OK);
	assert_int_equal(s.hdr->totals.queries, 8);
	seg_detach(&s);
}

static void claim_release_fold(void **state)
{
	(void)state;
	struct segment s;
	assert_int_equal(attach(&s, 1), SEG_OK);
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
	assert_int_equal(attach(&s, 1), SEG_OK);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t kid = fork();
	if (kid == 0) {
		int p = seg_proc_claim(&s);
		s.procs[p].pid = getpid();
		s.procs[p].starttime = procid_starttime(getpid());
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
	for (uint32_t i = 0; i < s.max_conns; i++)
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
	uint64_t mine = procid_starttime(getpid());
	assert_true(mine > 0);
	assert_int_equal(mine, starttime_by_hand());
	assert_true(procid_alive(getpid(), mine));
	assert_false(procid_alive(getpid(), mine + 1));
	assert_false(procid_alive(0, mine));

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
	uint64_t st = procid_starttime(kid);
	assert_true(procid_alive(kid, st));
	kill(kid, SIGKILL);
	for (int i = 0; i < 1000 && procid_alive(kid, st); i++)
		usleep(1000);
	assert_false(procid_alive(kid, st));   /* still a zombie here */
	waitpid(kid, NULL, 0);
}

/* The sizes come from the policy when created, from the segment after. */
static void sizes_from_policy(void **state)
{
	(void)state;
	struct segment s;
	assert_int_equal(attach_sized(&s, 1, 1024, 100), SEG_OK);
	assert_int_equal(s.max_procs, 1024);
	assert_int_equal(s.max_conns, 100);
	for (int i = 0; i < 1024; i++)
		assert_true(seg_proc_claim(&s) >= 0);
	assert_int_equal(seg_proc_claim(&s), -1);      /* full: never past the end */
	seg_full_message(&s, 1, why, sizeof why);
	assert_non_null(strstr(why, "max_processes = 1024"));
	seg_detach(&s);
	/* asked with other sizes: usable as it is, and said so */
	assert_int_equal(attach_sized(&s, 1, 512, 4096), SEG_OTHER_SIZE);
	assert_int_equal(s.max_procs, 1024);
	assert_non_null(strstr(why, "max_processes = 1024, max_tracked = 100"));
	seg_detach(&s);
}

/* Truncated under us: seg_check sees it and swaps in private memory whose
 * cap is full; a fault in the mapping (the guard) does the same. */
static int damage_calls;
static void on_damage(void) { damage_calls++; }

static void truncated_under_us(void **state)
{
	(void)state;
	struct segment s;
	char path[320];
	path_of(path, sizeof path);
	assert_int_equal(attach(&s, 1), SEG_OK);
	seg_guard(&s, on_damage);
	assert_int_equal(seg_check(&s, why, sizeof why), SEG_OK);
	assert_int_equal(truncate(path, 0), 0);
	/* touching the last page would kill us without the guard */
	volatile uint32_t *last = &s.conns[s.max_conns - 1].state;
	assert_int_equal(*last, 0);
	assert_int_equal(damage_calls, 1);
	assert_int_equal(seg_check(&s, why, sizeof why), SEG_DAMAGED);
	assert_non_null(strstr(why, "truncated"));
	assert_int_equal(s.hdr->cap.sems[SEM_ACTIVE].max, 1);
	assert_int_equal(sem_count(s.hdr->cap.sems[SEM_ACTIVE].word), 1);
	seg_detach(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(creates_private_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(creation_race, setup, teardown),
		cmocka_unit_test_setup_teardown(claim_release_fold, setup, teardown),
		cmocka_unit_test_setup_teardown(reaps_killed_process, setup, teardown),
		cmocka_unit_test(pid_reuse_is_not_life),
		cmocka_unit_test_setup_teardown(sizes_from_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(truncated_under_us, setup, teardown),
	};
	return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
