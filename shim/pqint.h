/*
 * pqint.h - the libpq adapter that reads and writes inside a PGconn: its
 * internal layout, from the libpq-int.h of the libpq pqshim was built
 * against, used only after checking at run time that the loaded libpq has
 * that major version (pqint_init).  With another major version every
 * function here declines (returns 0 or -1) and the callers fall back to
 * libpq's public functions, or to resetting instead of moving.
 */
#ifndef PQSHIM_PQINT_H
#define PQSHIM_PQINT_H

#include <libpq-fe.h>
#include <stdint.h>

/* Check the loaded libpq once; 1 when the internal layout is known. */
int pqint_init(void);

/* Where a PGconn keeps what PQtransactionStatus reads (byte offsets), for
 * the shim's fast path to read in place without a call (xact_status,
 * shim.h).  Set by pqint_init when the layout is known; else known = 0. */
struct pqint_layout {
	unsigned known;
	unsigned status, async, xact;
};
extern struct pqint_layout pqint __attribute__((visibility("hidden")));
#define PQINT_ASYNC_IDLE 0

/* The same offsets as constants, for the fast settle (wrap_work.c): the
 * three fields lead struct pg_conn in libpq 15, ahead of any field a build
 * option adds (pqint.c checks them against libpq-int.h at compile time).
 * Used only while pqint.known. */
#define PQINT_OFF_STATUS 344     /* ConnStatusType status; then asyncStatus */
#define PQINT_OFF_XACT   352     /* PGTransactionStatusType xactStatus */

/* Is the connection fine, with no command in progress and idle outside a
 * transaction (pqint_xact_status == PQTRANS_IDLE)?  0 when it is: all
 * three are 0 then, status and asyncStatus side by side read as one.
 * Only when pqint.known. */
static inline __attribute__((always_inline)) uint64_t pqint_not_idle(const PGconn *conn)
{
	const char *p = (const char *)conn;
	uint64_t both, xact;
	__builtin_memcpy(&both, p + PQINT_OFF_STATUS, 8);
	xact = *(const unsigned *)(p + PQINT_OFF_XACT);
	return both | xact;
}

/* Has libpq a result ready to hand (asyncStatus PGASYNC_READY)?  Then its
 * PQgetResult returns it at once.  Only when pqint.known. */
#define PQINT_ASYNC_READY 2
static inline __attribute__((always_inline)) int pqint_result_ready(const PGconn *conn)
{
	return *(const int *)((const char *)conn + PQINT_OFF_STATUS + 4) == PQINT_ASYNC_READY;
}

/* PQtransactionStatus(conn) as libpq computes it, read in place: only
 * when pqint.known. */
static inline __attribute__((always_inline)) PGTransactionStatusType
pqint_xact_status(const PGconn *conn)
{
	const char *p = (const char *)conn;
	if (*(const int *)(p + pqint.status) != CONNECTION_OK)
		return PQTRANS_UNKNOWN;
	if (*(const int *)(p + pqint.async) != PQINT_ASYNC_IDLE)
		return PQTRANS_ACTIVE;
	return (PGTransactionStatusType)*(const int *)(p + pqint.xact);
}

/* Compare what the fast path reads in place with what libpq says; on a
 * difference, stop reading in place (and say so once): 1 then (the caller
 * makes its fast connections look again), else 0.  Called after every
 * connect step and on the slow paths of sends and settles, so a layout that
 * differs is caught at a program's first connection. */
int pqint_verify(const PGconn *conn);

/*
 * The program's PGconn * must stay valid while the connection behind it
 * moves to another server: a fresh connection is opened, and the contents
 * of the two PGconn structures are exchanged.  Only possible when nothing
 * inside points back at the structure that cannot be pointed elsewhere
 * (TLS can: OpenSSL's objects are re-pointed; GSS encryption and event
 * procedures cannot) and no work is in flight; pqint_can_swap says.
 */
int pqint_can_swap(const PGconn *conn);
void pqint_swap(PGconn *a, PGconn *b);

/* Mark a connection busy while the shim holds its statement back (on = 1),
 * or idle again just before sending it (on = 0).  -1: not possible. */
int pqint_hold_back(PGconn *conn, int on);

/*
 * A held-back connection the program may be waiting on in its own poll of
 * the socket, where no call reaches the shim (defer.c): make the server
 * answer on it.  pqint_wake_can: only on a plain socket (TLS and GSS
 * encrypt the stream: nothing can be put into it from outside); then
 * pqint_wake sends a Sync (any thread; 0, or -1), which an idle server
 * answers with ReadyForQuery: the socket turns readable, and libpq, still
 * told busy, reads that as the end of the held-back command (idle again).
 * pqint_wake_drain (the program's thread) reads that answer if the
 * program has not yet, at most timeout_ms: 0 once idle, else -1 (then
 * marked idle anyway).
 */
int pqint_wake_can(const PGconn *conn);
int pqint_wake(PGconn *conn);
int pqint_wake_drain(PGconn *conn, int timeout_ms);

/*
 * Has the server ended this connection's session?  Read in place, never a
 * call into libpq, so any thread may ask about a connection another thread
 * uses (slots.c): 1 when libpq already marked it bad, or its socket shows
 * the server's end closed (readable with end-of-file: POLLRDHUP, or
 * POLLHUP/POLLERR), else 0; -1 when the layout is unknown.
 */
int pqint_peer_gone(const PGconn *conn);

/* Copy notice hooks, blocking mode and tracing from one PGconn to another. */
void pqint_carry_hooks(const PGconn *from, PGconn *to);

/* Make the program's cancel object `dst` cancel what `src` (a fresh one,
 * from the connection's new server) cancels.  0, or -1 if not possible. */
int pqint_cancel_copy(PGcancel *dst, const PGcancel *src);

#endif
