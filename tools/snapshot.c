/*
 * snapshot.c - take a consistent copy of a segment and derive what the tool
 * shows from it (see snapshot.h).  Owns: mapping the segment a command
 * names, reaping before reading, the cap figures (active/waiting from the
 * semaphore words, counters, the merged wait histogram and its quantiles),
 * the policy's state as the tool sees it (path, generation, error,
 * read-only), and the words SPEC.md uses for a record's fields.
 *
 * Invariants:
 *  - nothing here writes to the segment except seg_reap() (which only
 *    takes dead processes' records) and the creation of a missing segment;
 *  - a record is in a snapshot only if it was LIVE with the same generation
 *    before and after the copy (seg_*_read), so no record is ever torn.
 */
#include "snapshot.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const state_words[] = { "connecting", "idle", "active", "in_transaction", "waiting" };
static const char *const status_words[] = { "connecting", "ok", "bad" };
static const char *const target_words[] = { "direct", "primary", "replica" };

#define WORD(table, i) ((i) < sizeof table / sizeof table[0] ? table[i] : "unknown")

const char *snap_state_word(uint32_t cstate) { return WORD(state_words, cstate); }
const char *snap_status_word(uint32_t status) { return WORD(status_words, status); }
const char *snap_target_word(uint32_t target) { return WORD(target_words, target); }

uint32_t snap_conn_state(const struct seg_conn *c)
{
	for (unsigned i = 0; i < CAP_SEMS; i++)
		if (c->hold[i] == HOLD_WAITING)
			return CS_WAITING;
	return c->cstate;
}

int snap_holds_slot(const struct seg_conn *c)
{
	uint8_t h = c->hold[SEM_ACTIVE];
	return h == HOLD_HELD || h == HOLD_RELEASING;
}

const char *snap_slot_word(const struct seg_conn *c)
{
	/* Counted from the CAS up to the CAS down; an acquire about to CAS
	 * may still fail and is not counted yet. */
	switch (c->hold[SEM_ACTIVE]) {
	case HOLD_HELD:
	case HOLD_RELEASING:
		return "held";
	case HOLD_WAITING:
		return "waiting";
	case HOLD_SHARED:
		return "shared";
	default:
		return "none";
	}
}

static uint64_t clock_now(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- opening ----------------------------------------------------------- */

int snap_open(struct snap_source *src, const char *policy, const char *segment,
              const char *who)
{
	memset(src, 0, sizeof *src);
	target_segment(policy, segment, src->segname, sizeof src->segname,
	               src->policy_path, sizeof src->policy_path);
	int err = seg_attach(&src->seg, src->segname, 1);
	if (err) {
		char path[320];
		seg_path(src->segname, path, sizeof path);
		fprintf(stderr, "%s: cannot map segment %s (%s): %s\n", who, src->segname,
		        path, seg_strerror(err));
		return -1;
	}
	return 0;
}

void snap_close(struct snap_source *src)
{
	seg_detach(&src->seg);
}

struct snapshot *snap_new(void)
{
	return calloc(1, sizeof(struct snapshot));
}

int snap_option(int argc, char **argv, int *i, const char **policy,
                const char **segment)
{
	const char *a = argv[*i];
	if (*i + 1 >= argc)
		return 0;
	if (!strcmp(a, "-p") || !strcmp(a, "--policy"))
		*policy = argv[++*i];
	else if (!strcmp(a, "-s") || !strcmp(a, "--segment"))
		*segment = argv[++*i];
	else
		return 0;
	return 1;
}

/* ---- the policy -------------------------------------------------------- */

/* The header's two strings are written by whichever process loaded the
 * policy last; copy them while no writer holds the flag and the
 * generation stays put, giving up after a few tries (they are only shown). */
static void copy_policy_strings(const struct seg_header *h, struct snap_policy *p)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t g = __atomic_load_n(&h->policy_generation, __ATOMIC_ACQUIRE);
		p->generation = g;
		if (__atomic_load_n(&h->policy_lock, __ATOMIC_ACQUIRE)) {
			sched_yield();
			continue;
		}
		memcpy(p->path, h->policy_path, sizeof p->path);
		memcpy(p->error, h->policy_error, sizeof p->error);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->policy_generation, __ATOMIC_RELAXED) == g
		    && !__atomic_load_n(&h->policy_lock, __ATOMIC_RELAXED))
			break;
	}
	p->path[sizeof p->path - 1] = '\0';
	p->error[sizeof p->error - 1] = '\0';
}

static int file_exists(const char *path)
{
	struct stat st;
	return path[0] && stat(path, &st) == 0;
}

/* Read the policy file itself (the flag file's presence is the truth); when
 * it does not load, the segment says what the programs still enforce. */
static void read_policy(const struct snap_source *src, const struct seg_header *h,
                        struct snap_policy *p)
{
	memset(p, 0, sizeof *p);
	copy_policy_strings(h, p);
	if (src->policy_path[0])
		snprintf(p->path, sizeof p->path, "%s", src->policy_path);
	if (!p->path[0])
		return;
	struct policy_errors errs;
	if (policy_load(p->path, &p->pol, &errs) == 0) {
		p->loaded = 1;
		p->read_only = p->pol.ro_enabled || file_exists(p->pol.flag_file);
	} else {
		/* A policy that does not load is not in force: the programs keep
		 * the last good one, whose read-only state they publish. */
		p->read_only = __atomic_load_n(&h->read_only, __ATOMIC_ACQUIRE) != 0;
		if (!p->error[0] && errs.count > 0)
			snprintf(p->error, sizeof p->error, "%s", errs.msg[0]);
	}
}

/* ---- the cap ----------------------------------------------------------- */

static uint64_t load64(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void read_sem(const struct seg_sem *live, struct snap_sem *out)
{
	uint64_t w = __atomic_load_n(&live->word, __ATOMIC_ACQUIRE);
	out->count = sem_count(w);
	out->waiting = sem_waiting(w);
	out->max = __atomic_load_n(&live->max, __ATOMIC_RELAXED);
	out->acquired = load64(&live->acquired);
	out->waits = load64(&live->waits);
	out->timeouts = load64(&live->timeouts);
	out->refused = load64(&live->refused);
	out->wait_ns_sum = load64(&live->wait_ns_sum);
	for (unsigned b = 0; b < CAP_HIST_BUCKETS; b++)
		out->hist[b] = load64(&live->hist[b]);
}

double snap_quantile_ms(const uint64_t hist[CAP_HIST_BUCKETS], double q)
{
	uint64_t n = 0, cum = 0;
	for (unsigned b = 0; b < CAP_HIST_BUCKETS; b++)
		n += hist[b];
	if (n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < CAP_HIST_BUCKETS; b++) {
		cum += hist[b];
		if (cum >= rank)
			return cap_bucket_le_ms(b < CAP_HIST_BUCKETS - 1 ? b : CAP_HIST_BUCKETS - 2);
	}
	return cap_bucket_le_ms(CAP_HIST_BUCKETS - 2);
}

static const char *scope_of(const struct seg_header *h, const struct snap_policy *p)
{
	if (p->loaded)
		return policy_scope_word(p->pol.scope);
	if (p->generation > 0)
		return policy_scope_word((enum cap_scope)__atomic_load_n(&h->cap.scope, __ATOMIC_RELAXED));
	return policy_scope_word(SCOPE_HOST);     /* SPEC's default */
}

static void read_cap(const struct seg_header *h, const struct snapshot *s, struct snap_cap *cap)
{
	memset(cap, 0, sizeof *cap);
	for (unsigned i = 0; i < CAP_SEMS; i++) {
		struct snap_sem *sem = &cap->sems[i];
		read_sem(&h->cap.sems[i], sem);
		cap->acquired += sem->acquired;
		cap->waits += sem->waits;
		cap->timeouts += sem->timeouts;
		cap->refused += sem->refused;
		cap->wait_ns_sum += sem->wait_ns_sum;
		for (unsigned b = 0; b < CAP_HIST_BUCKETS; b++) {
			cap->hist[b] += sem->hist[b];
			cap->hist_count += sem->hist[b];
		}
	}
	cap->scope = scope_of(h, &s->policy);
	cap->max_active = cap->sems[SEM_ACTIVE].max;
	cap->active = cap->sems[SEM_ACTIVE].count;
	cap->waiting = cap->sems[SEM_ACTIVE].waiting;
	cap->max_connections = cap->sems[SEM_CONNECTIONS].max;
	cap->connections = cap->max_connections ? cap->sems[SEM_CONNECTIONS].count
	                                        : (uint32_t)s->nconns;
	cap->wait_ms_p50 = snap_quantile_ms(cap->hist, 0.50);
	cap->wait_ms_p99 = snap_quantile_ms(cap->hist, 0.99);
}

/* The queue is kept under the cap's lock; a racy copy is good enough to
 * show who waits, and a half-written entry shows at most a wrong age. */
static void read_waiters(const struct seg_header *h, struct snapshot *s)
{
	s->nwaiters = 0;
	for (int i = 0; i < SEG_MAX_WAITERS; i++) {
		const struct seg_waiter *w = &h->cap.waiters[i];
		if (__atomic_load_n(&w->state, __ATOMIC_ACQUIRE) != WAITER_QUEUED)
			continue;
		struct snap_waiter *o = &s->waiters[s->nwaiters++];
		o->pid = w->pid;
		o->tid = w->tid;
		o->sem = w->sem;
		o->since_ns = load64(&w->since_ns);
	}
}

/* ---- records ----------------------------------------------------------- */

static int by_pid(const void *a, const void *b)
{
	const struct seg_proc *x = a, *y = b;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

static int by_pid_tid_opened(const void *a, const void *b)
{
	const struct snap_conn *x = a, *y = b;
	if (x->r.pid != y->r.pid)
		return (x->r.pid > y->r.pid) - (x->r.pid < y->r.pid);
	if (x->r.tid != y->r.tid)
		return (x->r.tid > y->r.tid) - (x->r.tid < y->r.tid);
	if (x->r.opened_ns != y->r.opened_ns)
		return (x->r.opened_ns > y->r.opened_ns) - (x->r.opened_ns < y->r.opened_ns);
	return (x->idx > y->idx) - (x->idx < y->idx);
}

static void read_records(const struct segment *seg, struct snapshot *s)
{
	s->nprocs = s->nconns = 0;
	for (int i = 0; i < SEG_MAX_PROCS; i++)
		if (seg_proc_read(seg, i, &s->procs[s->nprocs]) == 0)
			s->nprocs++;
	for (int i = 0; i < SEG_MAX_CONNS; i++) {
		struct snap_conn *c = &s->conns[s->nconns];
		if (seg_conn_read(seg, i, &c->r) != 0)
			continue;
		c->r.server[sizeof c->r.server - 1] = '\0';
		c->r.appname[sizeof c->r.appname - 1] = '\0';
		c->r.cstate = snap_conn_state(&c->r);
		c->idx = i;
		c->last_used_ns = seg_ticks_to_ns(seg->hdr, c->r.last_used);
		s->nconns++;
	}
	for (int i = 0; i < s->nprocs; i++)
		s->procs[i].program[sizeof s->procs[i].program - 1] = '\0';
	qsort(s->procs, (size_t)s->nprocs, sizeof s->procs[0], by_pid);
	qsort(s->conns, (size_t)s->nconns, sizeof s->conns[0], by_pid_tid_opened);
}

static void read_totals(const struct seg_header *h, struct snapshot *s)
{
	const struct seg_totals *t = &h->totals;
	struct seg_totals *o = &s->totals;
	o->queries = load64(&t->queries);
	o->xacts = load64(&t->xacts);
	o->connects = load64(&t->connects);
	o->closes = load64(&t->closes);
	o->cross_thread_uses = load64(&t->cross_thread_uses);
	o->refused = load64(&t->refused);
	o->redirects = load64(&t->redirects);
	o->migrations = load64(&t->migrations);
	o->leaked = load64(&t->leaked);
	o->untracked = load64(&t->untracked);
	/* Live connections' counters join the totals when they close: add them
	 * now so the totals only ever grow. */
	for (int i = 0; i < s->nconns; i++) {
		o->queries += s->conns[i].r.queries;
		o->xacts += s->conns[i].r.xacts;
		o->cross_thread_uses += s->conns[i].r.cross_thread_uses;
	}
}

void snap_take(struct snap_source *src, struct snapshot *s)
{
	const struct seg_header *h = src->seg.hdr;

	seg_reap(&src->seg);
	s->taken_ns = clock_now(CLOCK_REALTIME);
	s->mono_ns = clock_now(CLOCK_MONOTONIC);
	s->version = h->version;
	read_policy(src, h, &s->policy);
	read_records(&src->seg, s);
	read_totals(h, s);
	read_cap(h, s, &s->cap);
	read_waiters(h, s);
}

uint32_t snap_forbidden_target(const struct snapshot *s)
{
	return s->policy.read_only ? TGT_PRIMARY : TGT_REPLICA;
}

/* ---- formatting -------------------------------------------------------- */

void snap_format_age(char *buf, size_t size, uint64_t ns)
{
	uint64_t ms = ns / 1000000, sec = ns / 1000000000;
	if (ms < 1000)
		snprintf(buf, size, "%llums", (unsigned long long)ms);
	else if (sec < 100)
		snprintf(buf, size, "%.1fs", (double)ns / 1e9);
	else if (sec < 3600)
		snprintf(buf, size, "%llum%02llus", (unsigned long long)(sec / 60),
		         (unsigned long long)(sec % 60));
	else if (sec < 86400)
		snprintf(buf, size, "%lluh%02llum", (unsigned long long)(sec / 3600),
		         (unsigned long long)(sec % 3600 / 60));
	else
		snprintf(buf, size, "%llud", (unsigned long long)(sec / 86400));
}

void snap_format_bar(char *buf, size_t size, uint32_t used, uint32_t max, unsigned width)
{
	if (!max || size < 3) {
		if (size)
			buf[0] = '\0';
		return;
	}
	unsigned cells = max < width ? max : width;
	if (cells + 3 > size)
		cells = (unsigned)size - 3;
	uint64_t fill = used >= max ? cells : ((uint64_t)used * cells + max - 1) / max;
	size_t n = 0;
	buf[n++] = '[';
	for (unsigned i = 0; i < cells; i++)
		buf[n++] = i < fill ? '#' : '-';
	buf[n++] = ']';
	buf[n] = '\0';
}

void snap_printable(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	if (!size)
		return;
	for (; *src && n + 1 < size; src++) {
		unsigned char ch = (unsigned char)*src;
		dst[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	dst[n] = '\0';
}

void snap_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}
