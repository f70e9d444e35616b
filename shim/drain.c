/*
 * drain.c - a connection that is never used again must not stay on a
 * target the policy forbids.
 *
 * Connections move at their next statement (switch.c).  For those that
 * make none, the shim's ticker thread (reload.c: started only when the
 * policy has a [read_only] primary or replica) calls drain_step four times
 * a second, after its tick has noticed any switch, and, a moment after a
 * switch, drain_step asks the server to end the backends of this process's idle
 * connections still on the forbidden target (pg_terminate_backend, over a
 * connection of its own with the same arguments, so the same user).  The
 * program's PGconn is never touched from this thread: at its next use the
 * connection is moved as usual, and a program that never uses it again
 * never notices.  Connections inside a transaction are left alone until
 * drain_timeout, then ended too if in_transaction = terminate.
 */
#include "drain.h"
#include "log.h"
#include "readonly.h"
#include "shim.h"

#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <time.h>
#include <ucontext.h>

/* Only the ticker thread uses these. */
static unsigned seen;             /* the read-only generation last seen */
static uint64_t switched;         /* mono_ms() of the switch being drained, or 0 */

struct victim {
	uint32_t backend;
	struct conn *c;          /* compared, never dereferenced, unless still mapped */
	PGconn *pg;
	struct connargs where;
};

/* The target read-only (or its end) forbids now. */
static uint32_t forbidden(void)
{
	return readonly_on() ? TGT_PRIMARY : TGT_REPLICA;
}

struct collect {
	struct victim *v;
	int n, max;
	int terminate_in_transaction;
	unsigned gen;
};

static void collect_one(void *value, void *arg)
{
	struct conn *c = value;
	struct collect *col = arg;
	struct seg_conn *r = c->rec;
	if (col->n >= col->max || !c->routed || c->ro_gen == col->gen
	    || !drain_idle_on(r, forbidden(), col->terminate_in_transaction))
		return;
	struct victim *v = &col->v[col->n++];
	v->backend = r->backend_pid;
	v->c = c;
	v->pg = c->pg;
	v->where.n = 0;
	connargs_copy(&v->where, &c->where);
}

/* End one backend from a connection of our own to the same server.
 * 1 when the server ended it. */
static int terminate(struct victim *v)
{
	int ended = 0;
	if (g.disabled)
		return 0;            /* the process is exiting */
	const char *kw[CONNARGS_MAX + 2], *val[CONNARGS_MAX + 2];
	connargs_arrays(&v->where, kw, val);
	int n = v->where.n;
	kw[n] = "application_name";
	val[n] = "pqshim-drain";
	kw[n + 1] = val[n + 1] = NULL;
	PGconn *ctl = real.PQconnectdbParams(kw, val, 0);
	if (real.PQstatus(ctl) == CONNECTION_OK) {
		char sql[96];
		snprintf(sql, sizeof sql, "select pg_terminate_backend(%u)", v->backend);
		PGresult *r = real.PQexec(ctl, sql);
		if (real.PQresultStatus(r) != PGRES_TUPLES_OK)
			shim_log(LOG_WARNING, "could not end backend %u: %s", v->backend,
			         real.PQresultErrorMessage(r));
		else
			ended = strcmp(real.PQgetvalue(r, 0, 0), "t") == 0;
		real.PQclear(r);
	} else {
		shim_log(LOG_WARNING, "could not reach the server to end backend %u: %s", v->backend,
		         real.PQerrorMessage(ctl));
	}
	real.PQfinish(ctl);
	return ended;
}

/* The record says what the server now knows: that backend is gone.  The
 * program's PGconn learns it, and moves, at its next use. */
static void mark_ended(struct victim *v)
{
	pthread_mutex_lock(&g.lock);
	if (connmap_get(&g.map, v->pg) == v->c && v->c->rec->backend_pid == v->backend) {
		v->c->rec->backend_pid = 0;
		v->c->rec->status = CST_BAD;
	}
	pthread_mutex_unlock(&g.lock);
}

void drain_begin(void)
{
	seen = readonly_gen();
	switched = 0;
}

void drain_step(void)
{
	unsigned gen = readonly_gen();
	if (gen != seen) {
		seen = gen;
		switched = mono_ms();
	}
	if (!switched || mono_ms() - switched < DRAIN_GRACE_MS)
		return;
	struct victim v[32];
	struct collect col = { v, 0, 32, 0, gen };
	col.terminate_in_transaction = g.pol.in_transaction == INTX_TERMINATE
	                               && mono_ms() - switched >= g.pol.drain_timeout_ms;
	pthread_mutex_lock(&g.lock);
	connmap_each(&g.map, collect_one, &col);
	pthread_mutex_unlock(&g.lock);
	for (int i = 0; i < col.n; i++) {
		if (terminate(&v[i])) {
			shim_log(LOG_INFO, "ended backend %u: its connection stayed on the "
			         "forbidden target", v[i].backend);
			mark_ended(&v[i]);
		}
		connargs_free(&v[i].where);
	}
	if (col.n == 0 && !col.terminate_in_transaction
	    && mono_ms() - switched >= g.pol.drain_timeout_ms)
		switched = 0;        /* nothing left to do for this switch */
}

/* ---- draining by signal, in a process without a ticker ----------------- */

struct text_range { uintptr_t lo, hi; };
static struct text_range texts[2];      /* the shim's and libpq's code */
static struct sigaction previous;       /* SIGURG's handler before ours */
static int installed;
static unsigned signal_drained;         /* connections ended by the handler (atomic) */

static int find_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct text_range *r = arg;
	uintptr_t want = r->lo;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && want >= lo && want < hi) {
			r->lo = lo;
			r->hi = hi;
			return 1;
		}
	}
	return 0;
}

static void text_of(const void *fn, struct text_range *r)
{
	r->lo = (uintptr_t)fn;
	r->hi = 0;
	if (!dl_iterate_phdr(find_text, r))
		r->lo = r->hi = 0;
}

/* Was the interrupted instruction in the shim's or libpq's code (or can
 * we not tell)? */
static int interrupted_inside(const void *uc)
{
	const ucontext_t *u = uc;
#if defined(__x86_64__)
	uintptr_t pc = (uintptr_t)u->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	uintptr_t pc = (uintptr_t)u->uc_mcontext.pc;
#else
	(void)u;
	return 1;
#endif
	for (int i = 0; i < 2; i++)
		if (pc >= texts[i].lo && pc < texts[i].hi)
			return 1;
	return 0;
}

struct signal_drain { uint32_t forbidden; int in_transaction_too; int n; };

/* Only async-signal-safe calls: libpq's PQsocket/PQstatus read fields.
 * (readonly_update's log line uses vsnprintf into a buffer on the stack,
 * with plain %s and %d: no lock, no allocation.) */
static void shut_one(void *value, void *arg)
{
	struct conn *c = value;
	struct signal_drain *d = arg;
	struct seg_conn *r = c->rec;
	if (!c->routed || !drain_idle_on(r, d->forbidden, d->in_transaction_too)
	    || real.PQstatus(c->pg) != CONNECTION_OK)
		return;
	int sock = real.PQsocket(c->pg);
	if (sock < 0 || shutdown(sock, SHUT_RDWR) != 0)
		return;
	r->backend_pid = 0;
	r->status = CST_BAD;
	d->n++;
}

static void on_drain_signal(int sig, siginfo_t *si, void *uc)
{
	if (si->si_code != SI_QUEUE || si->si_value.sival_int != DRAIN_SIGNAL_MAGIC) {
		/* not the drainer's: whoever had SIGURG before us */
		if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction)
			previous.sa_sigaction(sig, si, uc);
		else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN)
			previous.sa_handler(sig);
		return;
	}
	int saved = errno;
	struct seg_header *h = g.seg.hdr;
	/* A thread of the process, the shim's, or the process's own next
	 * call must do it: a tick as soon as it can. */
	__atomic_store_n(&hot.next_tick, 0, __ATOMIC_RELAXED);
	/* g.lock in a handler: the process has one thread, this one, and it
	 * was not in the shim's or libpq's code, so the shim holds the lock
	 * only if it was interrupted in a libc call made under it; then the
	 * trylock fails and we leave.  For this normal mutex glibc's trylock
	 * is one CAS on the lock word (the owner field is written after it,
	 * and cleared before the unlock's store), and the unlock below a
	 * store and a wake that nobody waits for: no lock taken, nothing
	 * allocated, nothing left half-done for the interrupted code. */
	if (!h || g.pid != getpid() || !__libc_single_threaded || t.depth || interrupted_inside(uc)
	    || pthread_mutex_trylock(&g.lock) != 0) {
		errno = saved;
		return;
	}
	/* The switch, seen and logged by this process as its own tick would
	 * (not with syslog: syslog() takes a lock). */
	if (strcmp(g.pol.log, "syslog") != 0)
		readonly_update();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	uint64_t since = __atomic_load_n(&h->switch_ns, __ATOMIC_ACQUIRE);
	if (!since || now < since || now - since < DRAIN_GRACE_MS * 1000000ull) {
		pthread_mutex_unlock(&g.lock);
		errno = saved;
		return;              /* too early to end anything */
	}
	struct signal_drain d = {
		__atomic_load_n(&h->read_only, __ATOMIC_ACQUIRE) ? TGT_PRIMARY : TGT_REPLICA,
		g.pol.in_transaction == INTX_TERMINATE && since && now - since >= g.pol.drain_timeout_ms * 1000000u,
		0 };
	connmap_each(&g.map, shut_one, &d);
	pthread_mutex_unlock(&g.lock);
	if (d.n) {
		__atomic_fetch_add(&signal_drained, (unsigned)d.n, __ATOMIC_RELAXED);
		map_epoch_bump();    /* the next statement takes the whole path, and moves */
	}
	errno = saved;
}

void drain_signal_install(void)
{
	if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL))
		return;
	text_of((const void *)drain_signal_install, &texts[0]);
	text_of((const void *)real.PQstatus, &texts[1]);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_drain_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGURG, &sa, &previous) != 0)
		shim_log(LOG_WARNING, "could not catch SIGURG: idle connections of this process "
		         "will move at their next use only");
}

void drain_signal_report(void)
{
	unsigned n = __atomic_exchange_n(&signal_drained, 0, __ATOMIC_RELAXED);
	if (n)
		shim_log(LOG_INFO, "ended %u idle connection%s on the forbidden target (asked by the "
		         "segment's drainer)", n, n == 1 ? "" : "s");
}
