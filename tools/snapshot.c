/*
 * snapshot.c - take a consistent copy of a segment and derive what the tool
 * shows from it (see snapshot.h).  Owns: mapping the segment a command
 * names, reaping before reading, the cap figures (active/waiting from the
 * semaphore words, counters, the merged wait histogram and its quantiles),
 * the policy's state as the tool sees it (path, generation, error,
 * read-only), and the words SPEC.md uses for a record's fields.
 *
 * Invariants:
 *  - nothing here writes to the segment except cap_reap() (which only
 *    takes dead processes' records and, if it took any, recounts the cap
 *    from the living); nothing here ever creates one;
 *  - a record is in a snapshot only if it was LIVE with the same generation
 *    before and after the copy (seg_*_read), so no record is ever torn.
 */
#include "snapshot.h"


#include <dirent.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
	return h == HOLD_HELD || h == HOLD_RELEASING || h == HOLD_RELEASING_COUNTED;
}

int snap_slot_parked(const struct seg_conn *c)
{
	uint8_t h = c->hold[SEM_ACTIVE];
	return h == HOLD_PARKED || h == HOLD_SWEEPING;
}

const char *snap_slot_word(const struct seg_conn *c)
{
	/* Counted from the CAS up to the CAS down; an acquire about to CAS
	 * may still fail and is not counted yet. */
	switch (c->hold[SEM_ACTIVE]) {
	case HOLD_HELD:
	case HOLD_RELEASING:
	case HOLD_RELEASING_COUNTED:
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

/* ---- finding and opening ------------------------------------------------ */

/* The groups this process is in (effective first). */
static int my_groups(gid_t *out, int max)
{
	int n = 0;
	out[n++] = getegid();
	gid_t list[256];
	int m = getgroups(256, list);
	for (int i = 0; i < m && n < max; i++) {
		int dup = 0;
		for (int j = 0; j < n; j++)
			dup |= out[j] == list[i];
		if (!dup)
			out[n++] = list[i];
	}
	return n;
}

/* A temporary file of seg_create: "<name>.tmp.<pid>.<hex>". */
static int is_temporary(const char *name)
{
	const char *t = strstr(name, ".tmp.");
	return t && strspn(t + 5, "0123456789.abcdef") == strlen(t + 5);
}

/* "pqshim.<uid>.<name>" of this user, or "pqshim.g<gid>.<name>" of one of
 * its groups: fill *f and return 1. */
static int visible(const char *entry, const gid_t *groups, int ngroups, struct snap_found *f)
{
	unsigned long id;
	char *end;
	int group = 0;
	if (strncmp(entry, "pqshim.", 7) != 0)
		return 0;
	const char *p = entry + 7;
	if (*p == 'g') {
		group = 1;
		p++;
	}
	if (*p < '0' || *p > '9')
		return 0;
	id = strtoul(p, &end, 10);
	if (*end != '.' || !seg_name_valid(end + 1) || is_temporary(end + 1))
		return 0;
	if (!group && id != (unsigned long)geteuid())
		return 0;
	if (group) {
		int mine = 0;
		for (int i = 0; i < ngroups; i++)
			mine |= (unsigned long)groups[i] == id;
		if (!mine)
			return 0;
	}
	if (snprintf(f->path, sizeof f->path, "/dev/shm/%s", entry) >= (int)sizeof f->path)
		return 0;
	snprintf(f->name, sizeof f->name, "%s", end + 1);
	f->gid = group ? (uint32_t)id : SEG_NO_GROUP;
	return 1;
}

int snap_list(struct snap_found *out, int max)
{
	gid_t groups[258];
	int ngroups = my_groups(groups, 258), n = 0;
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	struct dirent *e;
	struct snap_found f;
	while ((e = readdir(d)))
		if (visible(e->d_name, groups, ngroups, &f)) {
			if (n < max)
				out[n] = f;
			n++;
		}
	closedir(d);
	return n;
}

int snap_find(const char *name, struct snap_found *out)
{
	gid_t groups[258];
	int ngroups = my_groups(groups, 258);
	struct stat st;
	for (int i = -1; i < ngroups; i++) {
		uint32_t gid = i < 0 ? SEG_NO_GROUP : (uint32_t)groups[i];
		seg_path(name, gid, out->path, sizeof out->path);
		if (lstat(out->path, &st) == 0) {
			snprintf(out->name, sizeof out->name, "%s", name);
			out->gid = gid;
			return 0;
		}
	}
	return -1;
}

/* "a, b (group app), c" or "none". */
static void list_names(char *buf, size_t size)
{
	struct snap_found found[64];
	int n = snap_list(found, 64);
	size_t o = 0;
	buf[0] = '\0';
	for (int i = 0; i < n && i < 64 && o + 1 < size; i++) {
		char grp[32] = "";
		if (found[i].gid != SEG_NO_GROUP)
			snprintf(grp, sizeof grp, " (gid %u)", found[i].gid);
		int w = snprintf(buf + o, size - o, "%s%s%s", i ? ", " : "", found[i].name, grp);
		o += w > 0 ? (size_t)w : 0;
	}
	if (n > 64 && o + 1 < size)
		snprintf(buf + o, size - o, ", and %d more", n - 64);
	if (n == 0)
		snprintf(buf, size, "none");
}

static int same_file_name(const char *a, const char *b)
{
	if (!a[0] || !b[0])
		return 0;
	if (!strcmp(a, b))
		return 1;
	char ra[PATH_MAX], rb[PATH_MAX];
	return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

/* Live process records of a segment (dead ones do not count). */
static int live_processes(const struct segment *seg)
{
	int n = 0;
	struct seg_proc p;
	for (uint32_t i = 0; i < seg->max_procs; i++)
		if (seg_proc_read(seg, (int)i, &p) == 0 && seg_proc_alive(seg, i))
			n++;
	return n;
}

static void copy_policy_strings(const struct seg_header *h, struct snap_policy *p);

/* The visible segment whose programs run under `policy` (the path they
 * published), preferring one with live processes, then the last used. */
static int find_by_policy(const char *policy, struct snap_found *out)
{
	struct snap_found found[256];
	int n = snap_list(found, 256), best = -1, best_live = -1;
	uint64_t best_used = 0;
	char why[SEG_ERROR_MAX];
	for (int i = 0; i < n && i < 256; i++) {
		struct segment seg;
		if (seg_attach_path(&seg, found[i].path, found[i].gid, why, sizeof why) != SEG_OK)
			continue;
		struct snap_policy pub;      /* as published, under its policy_lock */
		copy_policy_strings(seg.hdr, &pub);
		if (same_file_name(pub.path, policy)) {
			int live = live_processes(&seg);
			uint64_t used = __atomic_load_n(&seg.hdr->last_used_ns, __ATOMIC_RELAXED);
			if (live > best_live || (live == best_live && used > best_used)) {
				best = i;
				best_live = live;
				best_used = used;
			}
		}
		seg_detach(&seg);
	}
	if (best < 0)
		return -1;
	*out = found[best];
	return 0;
}

/* The segment name the policy file itself gives (also when it is broken:
 * its `segment =` line, if any). */
static void name_from_policy(const char *abs, char *name, size_t size)
{
	struct policy p;
	struct policy_errors errs;
	if (policy_load(abs, &p, &errs) != 0) {
		policy_defaults(&p);
		policy_recover_segment(abs, p.segment, sizeof p.segment);
	}
	policy_segment_name(&p, abs, name, size);
}

int snap_open(struct snap_source *src, const char *policy, const char *segment,
              const char *who)
{
	struct snap_found f;
	char why[SEG_ERROR_MAX], names[1024];

	memset(src, 0, sizeof *src);
	if (segment) {
		if (!seg_name_valid(segment)) {
			fprintf(stderr, "%s: bad segment name \"%s\": a name is 1 to %d letters, digits, "
			        "'.', '_' or '-' (not a path)\n", who, segment, SEG_NAME_MAX);
			return 2;
		}
		snprintf(src->segname, sizeof src->segname, "%s", segment);
	} else {
		if (!policy)
			policy = getenv("PQSHIM_POLICY");
		if (policy && !*policy) {
			fprintf(stderr, "%s: empty policy path\n", who);
			return 2;
		}
		if (!policy) {
			snprintf(src->segname, sizeof src->segname, "default");
		} else {
			/* The shim records the path it was given, made absolute by
			 * `pqshim run`: compare with that. */
			char abs[PATH_MAX];
			if (!realpath(policy, abs))
				snprintf(abs, sizeof abs, "%s", policy);
			if (snprintf(src->policy_path, sizeof src->policy_path, "%s", abs)
			    >= (int)sizeof src->policy_path) {
				fprintf(stderr, "%s: policy path too long: %s\n", who, abs);
				return 2;
			}
			if (find_by_policy(abs, &f) == 0 || find_by_policy(policy, &f) == 0)
				snprintf(src->segname, sizeof src->segname, "%s", f.name);
			else    /* named as the shim names it: symlinks kept */
				name_from_policy(policy, src->segname, sizeof src->segname);
		}
	}
	if (snap_find(src->segname, &f) != 0) {
		list_names(names, sizeof names);
		fprintf(stderr, "%s: no segment %s%s%s (none created: only programs under the "
		        "shim create one); segments of this user and its groups: %s\n", who,
		        src->segname, src->policy_path[0] ? " for policy " : "", src->policy_path,
		        names);
		return 1;
	}
	if (seg_attach_path(&src->seg, f.path, f.gid, why, sizeof why) != SEG_OK) {
		fprintf(stderr, "%s: %s\n", who, why);
		return 1;
	}
	src->gid = f.gid;
	seg_guard(&src->seg, NULL);
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

void snap_free(struct snapshot *s)
{
	if (!s)
		return;
	free(s->procs);
	free(s->conns);
	free(s);
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
	/* Parked slots (cap.h) are counted in the word, but their connections
	 * are idle and give them to anyone who asks: not active. */
	uint32_t parked = 0;
	for (int i = 0; i < s->nconns; i++)
		parked += snap_slot_parked(&s->conns[i].r);
	struct snap_sem *act = &cap->sems[SEM_ACTIVE];
	act->count -= parked < act->count ? parked : act->count;
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
	for (uint32_t i = 0; i < seg->max_procs && i < s->max_procs; i++)
		if (seg_proc_read(seg, (int)i, &s->procs[s->nprocs]) == 0)
			s->nprocs++;
	for (uint32_t i = 0; i < seg->max_conns && i < s->max_conns; i++) {
		struct snap_conn *c = &s->conns[s->nconns];
		if (seg_conn_read(seg, (int)i, &c->r) != 0)
			continue;
		c->r.server[sizeof c->r.server - 1] = '\0';
		c->r.appname[sizeof c->r.appname - 1] = '\0';
		c->r.cstate = snap_conn_state(&c->r);
		c->idx = (int)i;
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

	s->lost = seg_check(&src->seg, s->lost_why, sizeof s->lost_why) != SEG_OK;
	if (!s->lost)
		cap_reap(&src->seg, cap_now_ns() + 1000000000ull);   /* and recount */
	if (s->max_procs != src->seg.max_procs || s->max_conns != src->seg.max_conns) {
		struct seg_proc *p = realloc(s->procs, src->seg.max_procs * sizeof *p);
		struct snap_conn *c = realloc(s->conns, src->seg.max_conns * sizeof *c);
		if (p)
			s->procs = p;
		if (c)
			s->conns = c;
		s->max_procs = p ? src->seg.max_procs : 0;
		s->max_conns = c ? src->seg.max_conns : 0;
		if (!p || !c)
			s->max_procs = s->max_conns = 0;   /* out of memory: show none */
	}
	s->taken_ns = clock_now(CLOCK_REALTIME);
	s->mono_ns = clock_now(CLOCK_MONOTONIC);
	s->version = h->version;
	read_policy(src, h, &s->policy);
	read_records(&src->seg, s);
	read_totals(h, s);
	read_cap(h, s, &s->cap);
	snap_read_lanes(h, s);
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

/* Length of the well-formed UTF-8 sequence at s (RFC 3629, Unicode's
 * table 3-7), or 0 if the byte at s does not start one. */
static int utf8_sequence(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	int n;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;          /* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f;          /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;          /* nothing past U+10FFFF */
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

void snap_json_seconds(FILE *out, uint64_t ns)
{
	uint64_t ms = (ns + 500000) / 1000000;
	char buf[32], *e = buf + sizeof buf, *q = e;
	for (int i = 0; i < 3; i++, ms /= 10)
		*--q = (char)('0' + ms % 10);
	*--q = '.';
	do {
		*--q = (char)('0' + ms % 10);
		ms /= 10;
	} while (ms);
	fwrite_unlocked(q, 1, (size_t)(e - q), out);
}

void snap_json_string(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	putc_unlocked('"', out);
	while (*s) {
		/* a run of printable ASCII that needs no escape goes out whole
		 * (4,000 connections' strings in `stat --json`: one write each) */
		size_t run = 0;
		while (s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\')
			run++;
		if (run) {
			fwrite_unlocked(s, 1, run, out);
			s += run;
			continue;
		}
		unsigned char ch = *s;
		int n = utf8_sequence(s);
		if (n == 0) {
			fputs("\\ufffd", out);
			s++;
		} else if (ch == '"' || ch == '\\') {
			fprintf(out, "\\%c", ch);
			s++;
		} else if (ch < 0x20 || ch == 0x7f) {
			fprintf(out, "\\u%04x", ch);
			s++;
		} else {
			fwrite(s, 1, (size_t)n, out);
			s += n;
		}
	}
	putc_unlocked('"', out);
}
