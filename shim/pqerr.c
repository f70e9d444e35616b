/*
 * pqerr.c - see pqerr.h.  Writes libpq's error fields, so it includes
 * libpq-int.h (checked usable by pqint_init first).
 */
#include "postgres_fe.h"
#include "libpq-fe.h"
#include "libpq-int.h"

#include "pqerr.h"
#include "pqint.h"
#include "real.h"

#include <stdlib.h>
#include <string.h>

void pqerr_set_message(PGconn *conn, const char *msg)
{
	if (!conn || !pqint_init())
		return;
	PQExpBuffer buf = &conn->errorMessage;
	size_t need = strlen(msg) + 2;         /* text, '\n', NUL */
	if (buf->maxlen < need || !buf->data) {
		/* libpq's buffers are malloc'd: realloc keeps PQfinish's free valid */
		char *d = realloc(buf->data, need);
		if (!d)
			return;
		buf->data = d;
		buf->maxlen = need;
	}
	memcpy(buf->data, msg, need - 2);
	buf->data[need - 2] = '\n';
	buf->data[need - 1] = '\0';
	buf->len = need - 1;
	conn->errorReported = 0;
}

static int add_field(PGresult *res, char code, const char *value)
{
	size_t len = strlen(value);
	PGMessageField *f = real.PQresultAlloc(res, offsetof(PGMessageField, contents) + len + 1);
	if (!f)
		return -1;
	f->code = code;
	memcpy(f->contents, value, len + 1);
	f->next = res->errFields;
	res->errFields = f;
	return 0;
}

PGresult *pqerr_result(PGconn *conn, const char *sqlstate, const char *msg)
{
	pqerr_set_message(conn, msg);
	/* With conn, libpq copies the connection's message into the result. */
	PGresult *res = real.PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
	if (!res || !pqint_init())
		return res;
	if (add_field(res, PG_DIAG_MESSAGE_PRIMARY, msg) || add_field(res, PG_DIAG_SQLSTATE, sqlstate)
	    || add_field(res, 'V', "ERROR") || add_field(res, PG_DIAG_SEVERITY, "ERROR"))
		return res;
	if (!conn) {
		size_t len = strlen(msg);
		char *m = real.PQresultAlloc(res, len + 2);
		if (m) {
			memcpy(m, msg, len);
			m[len] = '\n';
			m[len + 1] = '\0';
			res->errMsg = m;
		}
	}
	return res;
}

PGconn *pqerr_bad_conn(const char *msg)
{
	/* An unknown keyword fails in conninfo parsing, before any socket. */
	PGconn *conn = real.PQconnectStart("pqshim_refused=1");
	if (conn)
		pqerr_set_message(conn, msg);
	return conn;
}
