/*
 * record.c - the record of this process and of its connections in the
 * shared segment (see record.h).
 *
 * Only the process in g.pid writes the records it owns; a fork child
 * re-registers (startup.c) before it touches any.
 */
#include "record.h"
#include "procid.h"

#include <errno.h>   /* program_invocation_short_name */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t record_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void record_register_process(pid_t parent)
{
	g.pid = getpid();
	g.proc = &g.proc_local;
	g.proc_idx = -1;
	int idx = g.seg.hdr ? seg_proc_claim(&g.seg) : -1;
	if (idx >= 0) {
		g.proc_idx = idx;
		g.proc = &g.seg.procs[idx];
	}
	struct seg_proc *p = g.proc;
	p->pid = g.pid;
	p->ppid = parent ? parent : getppid();
	p->starttime = procid_starttime(g.pid);
	p->uid = (uint32_t)geteuid();
	p->threads = 0;
	p->connections = 0;
	p->inherited = 0;
	p->started_ns = record_now_ns();
	snprintf(p->program, sizeof p->program, "%s", program_invocation_short_name);
	if (idx >= 0)
		__atomic_store_n(&p->state, SLOT_LIVE, __ATOMIC_RELEASE);
}

void record_unregister_process(void)
{
	if (g.proc_idx >= 0)
		seg_proc_release(&g.seg, g.proc_idx);
	g.proc_idx = -1;
	g.proc = &g.proc_local;
}

void record_claim(struct conn *c)
{
	c->idx = g.seg.hdr && g.proc_idx >= 0 ? seg_conn_claim(&g.seg, (uint32_t)g.proc_idx) : -1;
	c->rec = c->idx >= 0 ? &g.seg.conns[c->idx] : &c->local;
	c->rec->proc = (uint32_t)g.proc_idx;
	c->rec->pid = g.pid;
	c->rec->tid = t.tid;
}

void record_release(struct conn *c, int leaked)
{
	if (c->idx >= 0) {
		struct seg_conn *r = c->rec;
		/* Point the record at the private copy first: a racing thread
		 * (misuse, but possible) then writes memory that is ours. */
		c->local = *r;
		c->rec = &c->local;
		if (__atomic_load_n(&r->state, __ATOMIC_RELAXED) == SLOT_LIVE) {
			seg_conn_release(&g.seg, c->idx, leaked);
		} else {                 /* claimed, never opened */
			__atomic_store_n(&r->pid, 0, __ATOMIC_RELAXED);
			__atomic_fetch_add(&r->gen, 1, __ATOMIC_RELEASE);
			__atomic_store_n(&r->state, SLOT_FREE, __ATOMIC_RELEASE);
		}
		c->idx = -1;
	}
}

static void set_status(struct seg_conn *r, PGconn *pg)
{
	switch (real.PQstatus(pg)) {
	case CONNECTION_OK:
		r->status = CST_OK;
		r->cstate = CS_IDLE;
		break;
	case CONNECTION_BAD:
		r->status = CST_BAD;
		r->cstate = CS_IDLE;
		break;
	default:
		r->status = CST_CONNECTING;
		r->cstate = CS_CONNECTING;
		break;
	}
}

static void describe_server(PGconn *pg, struct seg_conn *r)
{
	const char *host = real.PQhost(pg), *port = real.PQport(pg);
	const char *db = real.PQdb(pg), *user = real.PQuser(pg);
	/* Never the password: only these four keywords are shown. */
	snprintf(r->server, sizeof r->server, "host=%s port=%s dbname=%s user=%s",
	         host ? host : "", port ? port : "", db ? db : "", user ? user : "");
	const char *app = real.PQparameterStatus(pg, "application_name");
	snprintf(r->appname, sizeof r->appname, "%s", app ? app : "");
}

void record_describe(struct conn *c)
{
	set_status(c->rec, c->pg);
	describe_server(c->pg, c->rec);
	c->rec->backend_pid = c->rec->status == CST_OK ? (uint32_t)real.PQbackendPID(c->pg) : 0;
}

void record_connected(struct conn *c)
{
	set_status(c->rec, c->pg);
	if (c->rec->status == CST_OK) {
		describe_server(c->pg, c->rec);
		c->rec->backend_pid = (uint32_t)real.PQbackendPID(c->pg);
	}
}

void record_thread_seen(struct seg_conn *r, pid_t tid)
{
	if (r->last_tid == tid)
		return;
	r->last_tid = tid;
	uint32_t n = r->nthreads < SEG_THREADS_SEEN ? r->nthreads : SEG_THREADS_SEEN;
	for (uint32_t i = 0; i < n; i++)
		if (r->threads[i] == tid)
			return;
	if (r->nthreads < SEG_THREADS_SEEN)
		r->threads[r->nthreads] = tid;
	r->nthreads++;
}

void record_refused(void)
{
	if (g.seg.hdr)
		seg_add(&g.seg.hdr->totals.refused, 1);
}

void record_redirected(void)
{
	if (g.seg.hdr)
		seg_add(&g.seg.hdr->totals.redirects, 1);
}

void record_migrated(void)
{
	if (g.seg.hdr)
		seg_add(&g.seg.hdr->totals.migrations, 1);
}

/*
 * The header's two policy strings are shared by every process of the
 * segment: the writer takes the header's policy_lock (a spin flag), writes
 * both, bumps policy_generation and lets go; readers (the tool, snapshot.c)
 * copy while the flag is clear and the generation stays put.  A writer
 * that died holding the flag would block the others forever: after a
 * bounded spin the flag is taken over (the strings are only shown).
 */
#define POLICY_LOCK_SPINS 10000

void record_publish_policy(void)
{
	struct seg_header *h = g.seg.hdr;
	if (!h)
		return;
	int taken = 0;
	for (int i = 0; i < POLICY_LOCK_SPINS && !taken; i++) {
		uint32_t free_ = 0;
		taken = __atomic_compare_exchange_n(&h->policy_lock, &free_, 1, 0, __ATOMIC_ACQUIRE,
		                                    __ATOMIC_RELAXED);
		if (!taken)
			sched_yield();
	}
	if (!taken)
		__atomic_store_n(&h->policy_lock, 1, __ATOMIC_RELAXED);
	/* the flag is seen set before any byte of the strings changes */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	snprintf(h->policy_path, sizeof h->policy_path, "%s", g.policy_path);
	snprintf(h->policy_error, sizeof h->policy_error, "%s", g.policy_error);
	__atomic_fetch_add(&h->policy_generation, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&h->policy_lock, 0, __ATOMIC_RELEASE);
}
