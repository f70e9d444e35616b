/*
 * shim.h - the shim's process-wide and per-thread state, and the fast path
 * that every wrapper shares.
 *
 * Every wrapper has the same shape:
 *
 *     struct call cl;
 *     if (!call_begin(&cl, conn, CALL_SENDS))   // nested? refused?
 *             return <libpq-shaped error>;
 *     r = real.PQxxx(...);
 *     call_end(&cl);                              // account
 *
 * call_begin() costs a TLS read when libpq calls its own exports (nested),
 * and a lock-free map probe otherwise.  No system call, lock or allocation
 * happens on it once the thread and the connection are known.
 */
#ifndef PQSHIM_SHIM_H
#define PQSHIM_SHIM_H

#include "connmap.h"
#include "real.h"
#include "segment.h"
#include "../policy/policy.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define SHIM_EXPORT __attribute__((visibility("default")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define TLS __thread __attribute__((tls_model("initial-exec")))

/* The shim's view of one PGconn. */
struct conn {
	PGconn *pg;
	struct seg_conn *rec;     /* the shared record, or &local when untracked */
	int idx;                  /* index of rec in the segment, -1 if local */
	pid_t opener;             /* kernel tid of the opening thread */
	unsigned warned;          /* cross-thread warning already logged */
	struct seg_conn local;
};

struct shim {
	int state;                /* enum shim_state (atomic) */
	int disabled;             /* secure-exec or no libpq: pass everything through */
	pid_t pid;                /* the process the records below belong to */
	struct segment seg;       /* hdr == NULL: no segment, track locally only */
	int proc_idx;
	struct seg_proc *proc;
	struct seg_proc proc_local;
	struct policy pol;
	int policy_ok;            /* 0: the policy failed to load */
	char policy_path[POLICY_STR_MAX];
	char policy_error[SEG_ERROR_MAX];
	pthread_mutex_t lock;     /* connmap writers, process registration */
	pthread_key_t thread_key; /* its destructor counts threads out */
	struct connmap map;
};

enum shim_state { SHIM_UNINIT = 0, SHIM_READY = 1 };

extern struct shim g;

/* Per thread: nesting depth of libpq calls, and the cached kernel tid
 * (0 until the thread's first call, and again in a fork child). */
extern TLS int t_depth;
extern TLS pid_t t_tid;

/* What a call does, for accounting and rules. */
enum call_kind {
	CALL_SENDS  = 1,          /* sends a statement: counts, may be refused */
	CALL_SETTLE = 2,          /* may complete work: refresh the state after */
};

struct call {
	struct conn *c;           /* NULL: nested or untracked, nothing to do */
	PGconn *pg;
	unsigned kind;
	const char *refusal;      /* set when call_begin() refuses */
	const char *sqlstate;
};

/* Slow paths (track.c). */
static inline void shim_ensure(void);
void shim_init(void);
void thread_register(void);
int call_check_thread(struct call *cl);

static inline void shim_ensure(void)
{
	if (unlikely(__atomic_load_n(&g.state, __ATOMIC_ACQUIRE) != SHIM_READY))
		shim_init();
}

static inline struct conn *conn_lookup(PGconn *pg)
{
	return (struct conn *)connmap_get(&g.map, pg);
}

uint64_t coarse_now_ns(void);

/* A statement leaves: count it, the connection is active. */
static inline void track_sent(struct conn *c)
{
	struct seg_conn *r = c->rec;
	/* Only the thread using the connection writes these (libpq forbids
	 * concurrent use of one PGconn), so plain relaxed stores suffice. */
	__atomic_store_n(&r->queries, r->queries + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->cstate, CS_ACTIVE, __ATOMIC_RELAXED);
	__atomic_store_n(&r->last_used_ns, coarse_now_ns(), __ATOMIC_RELAXED);
}

/* Work may have completed: read libpq's own view.  PQtransactionStatus
 * says ACTIVE while results are pending, IDLE only outside a transaction. */
static inline void track_settle(struct conn *c)
{
	struct seg_conn *r = c->rec;
	uint32_t now;
	switch (real.PQtransactionStatus(c->pg)) {
	case PQTRANS_ACTIVE:  now = CS_ACTIVE; break;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR: now = CS_IN_TRANSACTION; break;
	default:              now = CS_IDLE; break;
	}
	uint32_t was = r->cstate;
	if (now == was)
		return;
	if (now == CS_IDLE && (was == CS_ACTIVE || was == CS_IN_TRANSACTION))
		__atomic_store_n(&r->xacts, r->xacts + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&r->cstate, now, __ATOMIC_RELAXED);
}

/* Returns 1 to go on with the real call, 0 when refused (cl->refusal says
 * why).  Always pair a 1 with call_end(). */
static inline int call_begin(struct call *cl, PGconn *pg, unsigned kind)
{
	cl->c = NULL;
	cl->refusal = NULL;
	if (t_depth++ > 0)
		return 1;
	shim_ensure();
	if (unlikely(t_tid == 0))
		thread_register();
	struct conn *c = conn_lookup(pg);
	if (!c)
		return 1;
	cl->c = c;
	cl->pg = pg;
	cl->kind = kind;
	if (unlikely(c->opener != t_tid) && !call_check_thread(cl)) {
		t_depth--;
		return 0;
	}
	if (kind & CALL_SENDS)
		track_sent(c);
	return 1;
}

static inline void call_end(struct call *cl)
{
	t_depth--;
	if (cl->c && (cl->kind & CALL_SETTLE))
		track_settle(cl->c);
}

/* Connect side (track.c). */
const char *track_connect_refusal(char *buf, size_t size);
struct conn *track_open(PGconn *pg);
void track_connected(PGconn *pg);
void track_close(PGconn *pg);
void track_refused(void);

#endif
