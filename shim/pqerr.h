/*
 * pqerr.h - errors that reach the program the way libpq reports its own.
 *
 * A refused call must look like a libpq failure: a PGRES_FATAL_ERROR result
 * whose PG_DIAG_SQLSTATE and message a driver turns into its usual exception
 * (psycopg2.errors.TooManyConnections for 53300), a PQerrorMessage for the
 * PQsend* family, a CONNECTION_BAD connection for a refused connect.  libpq
 * offers no public way to put a SQLSTATE into a result or a text into
 * PQerrorMessage, so this module (alone) uses libpq's internal layout from
 * the libpq-int.h of the libpq it was built against, and only after checking
 * at run time that the loaded libpq has that major version.  With another
 * major version it degrades: results carry no SQLSTATE and PQerrorMessage
 * keeps libpq's own text, and the shim says so once in its log.
 */
#ifndef PQSHIM_PQERR_H
#define PQSHIM_PQERR_H

#include <libpq-fe.h>

#define SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define SQLSTATE_PREREQUISITE_STATE   "55000"

/* Check the loaded libpq once; 1 when the internal layout is known. */
int pqerr_init(void);

/* Where a PGconn keeps what PQtransactionStatus reads (byte offsets), for
 * the shim's fast path to read in place without a call (xact_status,
 * shim.h).  Set by pqerr_init when the layout is known; else known = 0. */
struct pqint_layout {
	unsigned known;
	unsigned status, async, xact;
};
extern struct pqint_layout pqint __attribute__((visibility("hidden")));
#define PQINT_ASYNC_IDLE 0

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
 * difference, stop reading in place (and say so once).  Called after every
 * connect step and on the slow paths of sends and settles, so a layout that
 * differs is caught at a program's first connection. */
void pqint_verify(const PGconn *conn);

/* Replace the text PQerrorMessage(conn) returns.  msg has no trailing \n. */
void pqerr_set_message(PGconn *conn, const char *msg);

/* A PGRES_FATAL_ERROR result carrying sqlstate and msg (also set as the
 * connection's error message).  May return NULL only if out of memory. */
PGresult *pqerr_result(PGconn *conn, const char *sqlstate, const char *msg);

/* A new CONNECTION_BAD connection whose PQerrorMessage is msg; never
 * touches the network.  PQfinish frees it as usual. */
PGconn *pqerr_bad_conn(const char *msg);

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

/* Copy notice hooks, blocking mode and tracing from one PGconn to another. */
void pqint_carry_hooks(const PGconn *from, PGconn *to);

/* Make the program's cancel object `dst` cancel what `src` (a fresh one,
 * from the connection's new server) cancels.  0, or -1 if not possible. */
int pqint_cancel_copy(PGcancel *dst, const PGcancel *src);

#endif
