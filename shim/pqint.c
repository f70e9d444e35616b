/*
 * pqint.c - see pqint.h.  With pqerr.c, the only files that include
 * libpq-int.h.
 */
#include "postgres_fe.h"
#include "libpq-fe.h"
#include "libpq-int.h"

#include "pqint.h"
#include "real.h"
#include "log.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int layout_known = -1;
struct pqint_layout pqint;

/* What PQtransactionStatus reads, as libpq-int.h lays it out. */
_Static_assert(sizeof(((struct pg_conn *)0)->status) == sizeof(int), "ConnStatusType is an int");
_Static_assert(sizeof(((struct pg_conn *)0)->asyncStatus) == sizeof(int), "PGAsyncStatusType is an int");
_Static_assert(sizeof(((struct pg_conn *)0)->xactStatus) == sizeof(int), "PGTransactionStatusType is an int");
_Static_assert(PGASYNC_IDLE == PQINT_ASYNC_IDLE, "PGASYNC_IDLE");
_Static_assert(PGASYNC_READY == PQINT_ASYNC_READY, "PGASYNC_READY");
_Static_assert(offsetof(struct pg_conn, status) == PQINT_OFF_STATUS
               && offsetof(struct pg_conn, asyncStatus) == PQINT_OFF_STATUS + 4
               && offsetof(struct pg_conn, xactStatus) == PQINT_OFF_XACT,
               "pqint.h's constant offsets are libpq-int.h's");
_Static_assert(CONNECTION_OK == 0 && PGASYNC_IDLE == 0 && PQTRANS_IDLE == 0, "pqint_not_idle's test");

int pqint_init(void)
{
	if (layout_known < 0) {
		int major = real.PQlibVersion ? real.PQlibVersion() / 10000 : 0;
		layout_known = (major == PG_VERSION_NUM / 10000);
		/* (No probe connection here to check the layout with: freeing it
		 * left a hole in the program's heap that cost pgbench ~170
		 * instructions per transaction in malloc.  pqint_verify checks
		 * the program's own connections instead.) */
		if (layout_known) {
			pqint.status = offsetof(struct pg_conn, status);
			pqint.async = offsetof(struct pg_conn, asyncStatus);
			pqint.xact = offsetof(struct pg_conn, xactStatus);
			__atomic_store_n(&pqint.known, 1, __ATOMIC_RELEASE);
		}
		if (!layout_known)
			shim_log(LOG_WARNING, "libpq %d is not the libpq %d pqshim was built for: "
			         "refusals will carry no SQLSTATE", major, PG_VERSION_NUM / 10000);
	}
	return layout_known;
}

int pqint_verify(const PGconn *conn)
{
	if (!conn || !__atomic_load_n(&pqint.known, __ATOMIC_ACQUIRE))
		return 0;
	PGTransactionStatusType mine = pqint_xact_status(conn);   /* as the fast path reads */
	PGTransactionStatusType theirs = real.PQtransactionStatus(conn);
	if (mine == theirs || !__atomic_exchange_n(&pqint.known, 0, __ATOMIC_ACQ_REL))
		return 0;
	shim_log(LOG_WARNING, "libpq's connection layout is not the one pqshim was built "
	         "for (status %d read in place, %d from libpq): asking libpq from now on",
	         (int)mine, (int)theirs);
	return 1;
}

/* ---- moving a program's PGconn to another server ------------------------ */

/*
 * OpenSSL's objects point back at the PGconn they serve: the SSL object's
 * app data, and its BIO's app data (libpq 15.6 and later) or data (before:
 * it moved for OpenSSL 3.2).  After two PGconn exchange contents, each SSL
 * object must point at the structure it now lives in.  The functions come
 * from the OpenSSL that libpq loaded; without them SSL connections are not
 * moved (reset instead).
 */
static struct {
	void *(*ssl_get_ex)(const void *ssl, int idx);
	int (*ssl_set_ex)(void *ssl, int idx, void *arg);
	void *(*ssl_rbio)(const void *ssl);
	void *(*ssl_wbio)(const void *ssl);
	void *(*bio_get_ex)(const void *bio, int idx);
	int (*bio_set_ex)(void *bio, int idx, void *arg);
	void *(*bio_get_data)(void *bio);
	void (*bio_set_data)(void *bio, void *ptr);
} ossl;

static int ossl_ready(void)
{
	static int state;        /* 0: not looked yet; 1: found; -1: not there */
	int st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
	if (st)
		return st > 0;
	*(void **)&ossl.ssl_get_ex = real_libpq_dep("SSL_get_ex_data");
	*(void **)&ossl.ssl_set_ex = real_libpq_dep("SSL_set_ex_data");
	*(void **)&ossl.ssl_rbio = real_libpq_dep("SSL_get_rbio");
	*(void **)&ossl.ssl_wbio = real_libpq_dep("SSL_get_wbio");
	*(void **)&ossl.bio_get_ex = real_libpq_dep("BIO_get_ex_data");
	*(void **)&ossl.bio_set_ex = real_libpq_dep("BIO_set_ex_data");
	*(void **)&ossl.bio_get_data = real_libpq_dep("BIO_get_data");
	*(void **)&ossl.bio_set_data = real_libpq_dep("BIO_set_data");
	st = ossl.ssl_get_ex && ossl.ssl_set_ex && ossl.ssl_rbio && ossl.ssl_wbio && ossl.bio_get_ex
	     && ossl.bio_set_ex && ossl.bio_get_data && ossl.bio_set_data ? 1 : -1;
	__atomic_store_n(&state, st, __ATOMIC_RELEASE);
	return st > 0;
}

/* Does the BIO point at `was`?  Then make it point at `now` (if not NULL). */
static int bio_repoint(void *bio, const PGconn *was, PGconn *now)
{
	if (!bio)
		return 0;
	if (ossl.bio_get_ex(bio, 0) == was) {
		if (now)
			ossl.bio_set_ex(bio, 0, now);
		return 1;
	}
	if (ossl.bio_get_data(bio) == was) {
		if (now)
			ossl.bio_set_data(bio, now);
		return 1;
	}
	return 0;
}

/* conn's SSL object points at `was`: make it point at `now`.  With now
 * NULL, only say whether every pointer we know of is where expected. */
static int ssl_repoint(const PGconn *conn, const PGconn *was, PGconn *now)
{
	void *ssl = conn->ssl;
	if (!ssl || !ossl_ready() || ossl.ssl_get_ex(ssl, 0) != was)
		return 0;
	void *rbio = ossl.ssl_rbio(ssl), *wbio = ossl.ssl_wbio(ssl);
	if (!bio_repoint(rbio, was, now) || (wbio != rbio && !bio_repoint(wbio, was, now)))
		return 0;
	if (now)
		ossl.ssl_set_ex(ssl, 0, now);
	return 1;
}

int pqint_can_swap(const PGconn *conn)
{
	if (!conn || !pqint_init())
		return 0;
	/* OpenSSL's and GSSAPI's state point back at the PGconn they belong
	 * to, and event procedures keep per-connection data: such a
	 * connection cannot change its contents under the program.  Nor can
	 * one with work in flight. */
	/* In pipeline mode with nothing queued (pgbench's \startpipeline
	 * before the first statement) it can move: the new side enters
	 * pipeline mode too (switch.c). */
	int idle = conn->asyncStatus == PGASYNC_IDLE
	           || (conn->asyncStatus == PGASYNC_PIPELINE_IDLE && !conn->cmd_queue_head);
	/* SSL: if its objects point at this PGconn the way we know how to
	 * change (ssl_repoint) */
	int ssl_ok = !conn->ssl_in_use || ssl_repoint(conn, conn, NULL);
	return ssl_ok && !conn->gssenc && conn->nEvents == 0 && !conn->notifyHead
	    && idle && !conn->cmd_queue_head;
}

void pqint_swap(PGconn *a, PGconn *b)
{
	struct pg_conn tmp;
	memcpy(&tmp, a, sizeof tmp);
	memcpy(a, b, sizeof tmp);
	memcpy(b, &tmp, sizeof tmp);
	/* each SSL object now lives in the other structure */
	if (a->ssl_in_use)
		ssl_repoint(a, b, a);
	if (b->ssl_in_use)
		ssl_repoint(b, a, b);
}

void pqint_carry_hooks(const PGconn *from, PGconn *to)
{
	/* What the program set on its connection that belongs to the
	 * PGconn, not to the session: notice hooks, blocking mode, tracing. */
	to->noticeHooks = from->noticeHooks;
	to->nonblocking = from->nonblocking;
	to->Pfdebug = from->Pfdebug;
	to->traceFlags = from->traceFlags;
}

int pqint_cancel_copy(PGcancel *dst, const PGcancel *src)
{
	if (!dst || !src || !pqint_init())
		return -1;
	/* An address, a backend pid and key, TCP settings: no pointers. */
	memcpy(dst, src, sizeof(struct pg_cancel));
	return 0;
}

/* The work path (defer.c) holds a statement back: libpq must say busy meanwhile (PQisBusy,
 * PQtransactionStatus) and refuse another send, as if it had left. */
int pqint_hold_back(PGconn *conn, int on)
{
	if (!conn || !pqint_init())
		return -1;
	if (on) {
		if (conn->asyncStatus != PGASYNC_IDLE || conn->pipelineStatus != PQ_PIPELINE_OFF)
			return -1;
		conn->asyncStatus = PGASYNC_BUSY;
	} else if (conn->asyncStatus == PGASYNC_BUSY) {
		conn->asyncStatus = PGASYNC_IDLE;
	}
	return 0;
}

int pqint_wake_can(const PGconn *conn)
{
	return conn && pqint_init() && conn->sock != PGINVALID_SOCKET && !conn->ssl_in_use
	       && !conn->gssenc && conn->pipelineStatus == PQ_PIPELINE_OFF;
}

int pqint_wake(PGconn *conn)
{
	static const char sync_msg[5] = { 'S', 0, 0, 0, 4 };
	if (!pqint_wake_can(conn))
		return -1;
	return send(conn->sock, sync_msg, sizeof sync_msg, MSG_NOSIGNAL | MSG_DONTWAIT)
	       == (ssize_t)sizeof sync_msg ? 0 : -1;
}

int pqint_peer_gone(const PGconn *conn)
{
	if (!pqint.known)
		return -1;
	if (__atomic_load_n(&conn->status, __ATOMIC_RELAXED) != CONNECTION_OK)
		return 1;
	/* (If the thread using it closes the socket meanwhile, libpq is
	 * dropping the connection: lost either way.) */
	struct pollfd p = { __atomic_load_n(&conn->sock, __ATOMIC_RELAXED), POLLRDHUP, 0 };
	if (p.fd == PGINVALID_SOCKET)
		return 1;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

int pqint_wake_drain(PGconn *conn, int timeout_ms)
{
	for (int waited = 0; conn->asyncStatus == PGASYNC_BUSY; waited += 20) {
		if (!real.PQconsumeInput(conn) || !real.PQisBusy(conn))
			break;
		if (waited >= timeout_ms) {
			conn->asyncStatus = PGASYNC_IDLE;
			return -1;
		}
		struct pollfd p = { conn->sock, POLLIN, 0 };
		poll(&p, 1, 20);
	}
	if (conn->asyncStatus == PGASYNC_BUSY)
		conn->asyncStatus = PGASYNC_IDLE;   /* the connection failed meanwhile */
	return 0;
}
