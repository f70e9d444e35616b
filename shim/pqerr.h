/*
 * pqerr.h - errors that reach the program the way libpq reports its own.
 *
 * A refused call must look like a libpq failure: a PGRES_FATAL_ERROR result
 * whose PG_DIAG_SQLSTATE and message a driver turns into its usual exception
 * (psycopg2.errors.TooManyConnections for 53300), a PQerrorMessage for the
 * PQsend* family, a CONNECTION_BAD connection for a refused connect.  libpq
 * offers no public way to put a SQLSTATE into a result or a text into
 * PQerrorMessage, so this module writes libpq's internal fields (pqint.h
 * checks the layout first).  With another libpq major version it degrades:
 * results carry no SQLSTATE and PQerrorMessage keeps libpq's own text, and
 * the shim says so once in its log.
 */
#ifndef PQSHIM_PQERR_H
#define PQSHIM_PQERR_H

#include <libpq-fe.h>

#define SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define SQLSTATE_PREREQUISITE_STATE   "55000"
#define SQLSTATE_CONNECTION_FAILURE   "08006"
#define SQLSTATE_SYSTEM_ERROR         "58000"

/* Replace the text PQerrorMessage(conn) returns.  msg has no trailing \n. */
void pqerr_set_message(PGconn *conn, const char *msg);

/* A PGRES_FATAL_ERROR result carrying sqlstate and msg (also set as the
 * connection's error message).  May return NULL only if out of memory. */
PGresult *pqerr_result(PGconn *conn, const char *sqlstate, const char *msg);

/* A new CONNECTION_BAD connection whose PQerrorMessage is msg; never
 * touches the network.  PQfinish frees it as usual. */
PGconn *pqerr_bad_conn(const char *msg);

#endif
