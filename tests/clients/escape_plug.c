/*
 * escape_plug.c - a module with a libpq of its own (t_escape.sh links it
 * with libpq.a, or against a renamed copy): plug_query() connects through it.
 */
#include "escape_pq.h"

int plug_query(const char *conninfo, char *out, int n);

int plug_query(const char *conninfo, char *out, int n)
{
	const struct pq pq = { PQconnectdb, PQstatus, PQerrorMessage, PQexec, PQgetvalue,
	                       PQclear, PQfinish };
	return pq_backend_pid(&pq, conninfo, out, n);
}
