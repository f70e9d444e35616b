/*
 * defer.c - an event loop's statement waits its turn without blocking the
 * loop.
 *
 * A thread that drives several connections (pgbench -j 1 -c 4, asyncio)
 * and has work in flight on one of them cannot block in PQsendQuery for a
 * slot on another: the slot it waits for may be its own, freed only when
 * the loop reads that work's results.  Such a send is deferred instead: the
 * call and its arguments are copied, PQsend* returns 1, and libpq is told
 * the connection is busy (pqint_hold_back), so that PQisBusy says so with no
 * wrapper on that hot call.  The statement leaves when a slot comes to this
 * thread: after one of its own connections gives its slot back
 * (work_settle_finish calls defer_kick), or, once the thread has nothing in
 * flight any more, by waiting in line like anyone else.  The program sees a
 * slow statement, never a wrong one; the cap is never exceeded.  A deferred statement that
 * finally times out is answered by PQgetResult with the usual 53300 result.
 *
 * Every deferral ends by wait_timeout, even when the program never calls
 * again.  The deferral bets that the loop will read its other connection
 * (the one whose slot it waits for) without this one's answer; a program
 * that instead waits on this connection alone (ruby-pg's exec: send, then
 * its own poll on this socket, then read) would sit in that poll for ever,
 * and the shim gets no call there to end it.  So a watchdog thread ends
 * each deferral at its deadline: it marks it timed out and makes the
 * server answer on the socket (pqint_wake: a Sync, answered by
 * ReadyForQuery), so that the program's poll returns, libpq reads the
 * answer as the end of the held-back command, and the program's next
 * PQgetResult gets the 53300 result.  Only plain sockets can be woken that
 * way: a TLS or GSS connection is never deferred; it shares its thread's
 * slot (nested = share) instead - the cap may then count one statement
 * less than the server runs, but nothing hangs.  Why not always share,
 * or never defer: sharing lets an event loop of N connections run N
 * statements under a cap of 1 (pgbench -j 1 -c 4 would see 4); waiting
 * would wait on itself.
 */
#include "defer.h"
#include "log.h"
#include "pqerr.h"
#include "readonly.h"
#include "record.h"
#include "session.h"
#include "slots.h"
#include "work.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct deferred {
	struct deferred *next;     /* the process's queue, in order (g.lock) */
	struct conn *c;
	pid_t tid;                 /* the thread whose loop sends it */
	enum defer_kind kind;
	char *command, *name;
	int nparams, result_format;
	Oid *types;
	char **values;
	int *lengths, *formats;
	int inflight;              /* a kicker is sending it (g.lock): don't free */
	int failed;                /* it will not be sent: PQgetResult answers `error` */
	PGresult *error;           /* ... this result (NULL once given), then NULL */
	uint64_t since, deadline;  /* cap_now_ns(): saved, and its wait_timeout */
	int expired;               /* the watchdog ended it: the error is made when asked */
	int woken;                 /* ... and made the server answer on its socket */
};

static struct deferred *queue_head;   /* under g.lock */
static pthread_cond_t settled = PTHREAD_COND_INITIALIZER;   /* inflight cleared */
static pthread_cond_t queued;         /* a deferral was saved (CLOCK_MONOTONIC) */
static int watchdog;                  /* the watchdog thread runs (atomic) */

static void watchdog_start(void);

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void free_deferred(struct deferred *d)
{
	free(d->command);
	free(d->name);
	free(d->types);
	if (d->values)
		for (int i = 0; i < d->nparams; i++)
			free(d->values[i]);
	free(d->values);
	free(d->lengths);
	free(d->formats);
	free(d);
}

/* Keep a copy of a send for later.  0, or -1 (out of memory: send now). */
int defer_save(struct conn *c, enum defer_kind kind, const char *command, const char *name,
               int nparams, const Oid *types, const char *const *values, const int *lengths,
               const int *formats, int result_format)
{
	if (!pqint_wake_can(c->pg))
		return -1;           /* it could not be woken at its deadline: share instead */
	if (pqint_hold_back(c->pg, 1) != 0)
		return -1;           /* libpq could not be told: send now instead */
	struct deferred *d = calloc(1, sizeof *d);
	if (!d) {
		pqint_hold_back(c->pg, 0);
		return -1;
	}
	d->c = c;
	d->tid = t.tid;
	d->kind = kind;
	d->since = cap_now_ns();
	d->deadline = d->since + slots_wait_timeout_ms(c) * 1000000ull;   /* its lane's */
	d->command = dup_or_null(command);
	d->name = dup_or_null(name);
	d->nparams = nparams > 0 ? nparams : 0;
	d->result_format = result_format;
	if (d->nparams) {
		size_t n = (size_t)d->nparams;
		if (types && (d->types = malloc(n * sizeof *types)))
			memcpy(d->types, types, n * sizeof *types);
		if (lengths && (d->lengths = malloc(n * sizeof *lengths)))
			memcpy(d->lengths, lengths, n * sizeof *lengths);
		if (formats && (d->formats = malloc(n * sizeof *formats)))
			memcpy(d->formats, formats, n * sizeof *formats);
		if (values && (d->values = calloc(n, sizeof *d->values)))
			for (int i = 0; i < d->nparams; i++) {
				if (!values[i])
					continue;
				int binary = formats && formats[i] == 1;
				size_t len = binary && lengths ? (size_t)lengths[i] : strlen(values[i]) + 1;
				if ((d->values[i] = malloc(len ? len : 1)))
					memcpy(d->values[i], values[i], len);
			}
	}
	__atomic_store_n(&c->rec->cstate, CS_WAITING, __ATOMIC_RELAXED);
	pthread_mutex_lock(&g.lock);
	struct deferred **tail = &queue_head;
	while (*tail)
		tail = &(*tail)->next;
	*tail = d;
	c->deferred = d;
	__atomic_fetch_add(&hot.deferrals, 1, __ATOMIC_RELEASE);
	if (__atomic_load_n(&watchdog, __ATOMIC_ACQUIRE))
		pthread_cond_signal(&queued);
	pthread_mutex_unlock(&g.lock);
	watchdog_start();
	return 0;
}

/* ---- the watchdog ------------------------------------------------------- */

/* The deferral due first that no thread is working on, or NULL. */
static struct deferred *next_due_locked(void)
{
	struct deferred *due = NULL;
	for (struct deferred *d = queue_head; d; d = d->next)
		if (!d->failed && !d->inflight && (!due || d->deadline < due->deadline))
			due = d;
	return due;
}

static void watchdog_loop(void)
{
	pthread_mutex_lock(&g.lock);
	for (;;) {
		if (g.pid != getpid() || g.disabled)
			break;           /* exiting */
		struct deferred *d = next_due_locked();
		uint64_t now = cap_now_ns();
		if (d && now >= d->deadline) {
			/* Its wait is over: it will not be sent.  The program may
			 * sit in its own poll on this socket: make it return. */
			d->failed = 1;
			d->expired = 1;
			d->woken = pqint_wake(d->c->pg) == 0;
			__atomic_store_n(&d->c->rec->cstate, CS_IDLE, __ATOMIC_RELAXED);
			continue;
		}
		uint64_t until = d ? d->deadline : now + 1000000000ull;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t abs = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (until - now);
		ts.tv_sec = (time_t)(abs / 1000000000u);
		ts.tv_nsec = (long)(abs % 1000000000u);
		pthread_cond_timedwait(&queued, &g.lock, &ts);
	}
	__atomic_store_n(&watchdog, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&g.lock);
}

static void *watchdog_main(void *arg)
{
	(void)arg;
	watchdog_loop();
	return NULL;
}

/* `queued` times out by CLOCK_MONOTONIC: made once, before any thread can
 * wait on it or signal it (and again in a fork child, defer_after_fork). */
static pthread_once_t queued_once = PTHREAD_ONCE_INIT;

static void queued_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&queued, &ca);
	pthread_condattr_destroy(&ca);
}

static void watchdog_start(void)
{
	if (__atomic_load_n(&watchdog, __ATOMIC_ACQUIRE))
		return;
	pthread_once(&queued_once, queued_init);
	if (shim_thread_start(&watchdog, watchdog_main) != 0)
		shim_log(LOG_WARNING, "could not start the deferral watchdog: a deferred send "
		         "ends by wait_timeout only at the program's next call");
}

static void unlink_locked(struct deferred *d)
{
	for (struct deferred **p = &queue_head; *p; p = &(*p)->next)
		if (*p == d) {
			*p = d->next;
			break;
		}
}

/* The call d stands for, made now. */
static int send_real(struct deferred *d)
{
	PGconn *pg = d->c->pg;
	int ok = 0;
	switch (d->kind) {
	case DEFER_QUERY:
		ok = real.PQsendQuery(pg, d->command);
		break;
	case DEFER_PARAMS:
		ok = real.PQsendQueryParams(pg, d->command, d->nparams, d->types,
		                            (const char *const *)d->values, d->lengths, d->formats,
		                            d->result_format);
		break;
	case DEFER_PREPARED:
		ok = real.PQsendQueryPrepared(pg, d->name, d->nparams, (const char *const *)d->values,
		                              d->lengths, d->formats, d->result_format);
		break;
	case DEFER_PREPARE:
		ok = real.PQsendPrepare(pg, d->name, d->command, d->nparams, d->types);
		if (ok)
			session_note_prepare(d->c, d->name, d->command, d->nparams, d->types);
		break;
	case DEFER_DESCRIBE_PREPARED:
		ok = real.PQsendDescribePrepared(pg, d->name);
		break;
	case DEFER_DESCRIBE_PORTAL:
		ok = real.PQsendDescribePortal(pg, d->name);
		break;
	}
	return ok;
}

/* The slot is ours: send it for real. */
static void send_now(struct deferred *d)
{
	struct conn *c = d->c;
	PGconn *pg = c->pg;
	pqint_hold_back(pg, 0);
	c->rec->holder_tid = t.tid;
	/* A switch since it was deferred: follow it now, inside the slot. */
	if (unlikely(c->ro_gen != readonly_gen()) && work_follow_switch(c) != WORK_GO) {
		d->failed = 1;
		d->error = pqerr_result(c->pg, SQLSTATE_CONNECTION_FAILURE, work_why);
		return;
	}
	track_sent(c);
	int ok = OWN(send_real(d));
	if (!ok) {
		/* libpq refused it (a lost connection): answer as libpq would */
		d->failed = 1;
		d->error = real.PQmakeEmptyPGresult(pg, PGRES_FATAL_ERROR);
		track_settle(c);
	}
}

/* Done with d (sent, or its error returned): forget it. */
static void retire(struct deferred *d)
{
	pthread_mutex_lock(&g.lock);
	unlink_locked(d);
	if (d->c->deferred == d)
		d->c->deferred = NULL;
	__atomic_fetch_sub(&hot.deferrals, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&g.lock);
	free_deferred(d);
}

/* The oldest deferred send of the calling thread still waiting for a
 * slot, marked in flight: a PQfinish from another thread waits for us. */
static struct deferred *next_of_mine(void)
{
	struct deferred *d;
	pthread_mutex_lock(&g.lock);
	for (d = queue_head; d; d = d->next)
		if (d->tid == t.tid && !d->failed && !d->inflight)
			break;
	if (d)
		d->inflight = 1;
	pthread_mutex_unlock(&g.lock);
	return d;
}

/* Done with d for now: forget it if it left (sent), and let a waiting
 * PQfinish go on. */
static void land(struct deferred *d, int sent)
{
	int gone = 0;
	pthread_mutex_lock(&g.lock);
	d->inflight = 0;
	if (sent && !d->failed) {
		unlink_locked(d);
		if (d->c->deferred == d)
			d->c->deferred = NULL;
		__atomic_fetch_sub(&hot.deferrals, 1, __ATOMIC_RELEASE);
		gone = 1;
	}
	pthread_cond_broadcast(&settled);
	pthread_mutex_unlock(&g.lock);
	if (gone)
		free_deferred(d);
}

/* Give d its slot (waiting if `block`); 1 when it was sent or failed. */
static int try_send(struct deferred *d, int block)
{
	if (slot_try_active(d->c)) {
		send_now(d);
		return 1;
	}
	if (!block)
		return 0;
	char why[512];
	/* what is left of its wait_timeout, which began when it was sent */
	uint64_t now = cap_now_ns();
	enum slot_wait w = slot_wait_active_for(d->c, d->deadline > now ? d->deadline - now : 1,
	                                        why, sizeof why);
	if (w == WAIT_DEFER)
		return 0;
	if (w == WAIT_REFUSED) {
		/* waited its turn and timed out: PQgetResult will say so */
		record_refused();
		pqint_hold_back(d->c->pg, 0);
		d->failed = 1;
		d->error = pqerr_result(d->c->pg, SQLSTATE_TOO_MANY_CONNECTIONS, why);
		__atomic_store_n(&d->c->rec->cstate, CS_IDLE, __ATOMIC_RELAXED);
		return 1;
	}
	send_now(d);
	return 1;
}

/*
 * A slot may be free for this thread's deferred sends (one of its
 * connections just gave one back, or the loop polls).  Send what can be
 * sent in order; once the thread has nothing in flight, wait in line.
 */
void defer_kick(void)
{
	struct deferred *d;
	while ((d = next_of_mine())) {
		/* With results still coming on another of its connections, the
		 * loop will be back: keep waiting.  Without, wait in line (or,
		 * holding a slot idle in a transaction, follow `nested`) - but
		 * not while an exclusive lane waits: a kick comes as one of the
		 * loop's statements ends, its transaction goes on, and a send
		 * riding on its slot would be handed the slot at its end, and
		 * so on (measured: a migration waiting 2.7 s behind 258 such
		 * transactions).  It waits for the kick of a release instead. */
		int pending = slot_thread_pending(d->c) || slot_excl_held_back(d->c);
		int sent = try_send(d, !pending);
		land(d, sent);
		if (!sent)
			return;
	}
}

/* PQgetResult on it: the program waits for it, so we wait for its slot. */
PGresult *defer_result(struct conn *c, int *answered)
{
	struct deferred *d = c->deferred;
	*answered = 1;
	pthread_mutex_lock(&g.lock);
	d->inflight = 1;             /* the watchdog leaves it to us now */
	pthread_mutex_unlock(&g.lock);
	/* The program blocks on it: so may we (bounded by wait_timeout). */
	while (!d->failed && !try_send(d, 1))
		;
	if (d->expired && d->woken) {
		/* the server's answer to the watchdog's Sync: libpq must read
		 * it before the connection is idle (the program may not have) */
		pqint_wake_drain(c->pg, 1000);
		d->woken = 0;
	}
	if (d->expired == 1 && !d->error) {
		char why[512];
		slots_timed_out(c, why, sizeof why, cap_now_ns() - d->since);
		record_refused();
		pqint_hold_back(c->pg, 0);
		d->error = pqerr_result(c->pg, SQLSTATE_TOO_MANY_CONNECTIONS, why);
		d->expired = 2;          /* made: given once */
	}
	if (!d->failed) {
		land(d, 1);
		*answered = 0;       /* sent: libpq has the result */
		return NULL;
	}
	if (d->error) {
		PGresult *r = d->error;
		d->error = NULL;
		land(d, 0);
		return r;
	}
	land(d, 0);
	retire(d);               /* then NULL, as after any result */
	return NULL;
}

/* PQfinish: drop whatever waits. */
void defer_forget(struct conn *c)
{
	pthread_mutex_lock(&g.lock);
	while (c->deferred && c->deferred->inflight)
		pthread_cond_wait(&settled, &g.lock);   /* a kicker is sending it */
	struct deferred *d = c->deferred;
	if (d) {
		unlink_locked(d);
		c->deferred = NULL;
		__atomic_fetch_sub(&hot.deferrals, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&g.lock);
	if (d) {
		if (!d->failed)
			pqint_hold_back(c->pg, 0);
		if (d->error)
			real.PQclear(d->error);
		free_deferred(d);
	}
}

/* A fork child: what the parent's loops deferred is theirs to send. */
void defer_after_fork(void)
{
	queue_head = NULL;       /* the parent's copies: not ours to free */
	hot.deferrals &= DEFER_NOLAYOUT;
	watchdog = 0;            /* threads do not survive fork() */
	/* ... and the parent's waiters on these stay in them for ever (a
	 * signal could wait on waiters that will never wake, glibc): made
	 * anew, `queued` by the next watchdog_start.  Only this thread runs
	 * in the child: plain stores. */
	queued_once = (pthread_once_t)PTHREAD_ONCE_INIT;
	settled = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
}
