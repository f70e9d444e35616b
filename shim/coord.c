/*
 * coord.c - the coordination connection: SQL on the coordinator, nothing
 * else (see coord.h; what to ask for is lease.c's business).
 *
 * Every statement is one round trip and one transaction on the
 * coordinator, so that its xact count measures what leasing costs it.
 * Slots are taken with pg_try_advisory_lock in one statement for several
 * keys; the keys already held are skipped inside a CASE, because session
 * advisory locks are re-entrant (locking a held key twice would need two
 * unlocks) and a plain AND may be evaluated in any order.
 */
#include "shim.h"
#include "coord.h"
#include "lease_seg.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static PGconn *conn;
static uint32_t classid;
static uint64_t statements;

/* Not in the shim's table (real.h): looked up on libpq's own handle. */
static int (*pq_socket)(const PGconn *);
static PGnotify *(*pq_notifies)(PGconn *);

uint64_t coord_statements(void)
{
	return statements;
}

int coord_connected(void)
{
	return conn && real.PQstatus(conn) == CONNECTION_OK;
}

int coord_backend_pid(void)
{
	return conn ? real.PQbackendPID(conn) : 0;
}

void coord_describe(const char *conninfo, char *buf, size_t size)
{
	char *err = NULL;
	PQconninfoOption *opts = real.PQconninfoParse(conninfo, &err);
	if (!opts) {
		snprintf(buf, size, "(unparsable conninfo)");
		if (err)
			real.PQfreemem(err);
		return;
	}
	const char *want[] = { "host", "hostaddr", "port", "dbname", "user" };
	size_t used = 0;
	buf[0] = '\0';
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++)
		for (PQconninfoOption *o = opts; o->keyword; o++)
			if (strcmp(o->keyword, want[w]) == 0 && o->val && *o->val && used < size) {
				int n = snprintf(buf + used, size - used, "%s%s=%s", used ? " " : "",
				                 o->keyword, o->val);
				used += n > 0 ? (size_t)n : 0;
			}
	real.PQconninfoFree(opts);
}

/* libpq's multi-line message as one line: runs of blanks become one space. */
static void one_line(char *dst, size_t size, const char *src)
{
	size_t n = 0;
	for (; *src && n + 1 < size; src++) {
		int blank = *src == '\n' || *src == '\t' || *src == ' ';
		if (blank && (n == 0 || dst[n - 1] == ' '))
			continue;
		dst[n++] = blank ? ' ' : *src;
	}
	while (n && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

static void lost(void)
{
	if (conn)
		real.PQfinish(conn);
	conn = NULL;
}

/* One statement; its result, or NULL when the connection is gone (or the
 * statement failed: logged). */
static PGresult *run(const char *sql, ExecStatusType expect)
{
	if (!conn)
		return NULL;
	statements++;
	PGresult *r = real.PQexec(conn, sql);
	if (real.PQresultStatus(r) == expect)
		return r;
	if (real.PQstatus(conn) != CONNECTION_OK) {
		real.PQclear(r);
		lost();
		return NULL;
	}
	shim_log(LOG_WARNING, "coordinator: %s: %s", sql, r ? real.PQresultErrorMessage(r)
	         : real.PQerrorMessage(conn));
	real.PQclear(r);
	return NULL;
}

/* A whole number from a conninfo value, or dflt. */
static int conn_int(const char *v, int dflt)
{
	char *end;
	long n = v && *v ? strtol(v, &end, 10) : -1;
	return v && *v && *end == '\0' && n > 0 && n < 1000000 ? (int)n : dflt;
}

void coord_keepalive_of(const char *conninfo, struct coord_keepalive *k)
{
	*k = (struct coord_keepalive){ COORD_KEEPALIVES_IDLE, COORD_KEEPALIVES_INTERVAL,
	                               COORD_KEEPALIVES_COUNT, COORD_TCP_USER_TIMEOUT };
	char *err = NULL;
	PQconninfoOption *opts = real.PQconninfoParse(conninfo, &err);
	if (!opts) {
		if (err)
			real.PQfreemem(err);
		return;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (strcmp(o->keyword, "keepalives_idle") == 0)
			k->idle = conn_int(o->val, k->idle);
		else if (strcmp(o->keyword, "keepalives_interval") == 0)
			k->interval = conn_int(o->val, k->interval);
		else if (strcmp(o->keyword, "keepalives_count") == 0)
			k->count = conn_int(o->val, k->count);
		else if (strcmp(o->keyword, "tcp_user_timeout") == 0)
			k->user_timeout = conn_int(o->val, k->user_timeout);
	}
	real.PQconninfoFree(opts);
}

int coord_connect(const char *conninfo, const char *appname, uint32_t cls,
                  char *err, size_t size)
{
	if (!pq_socket) {
		pq_socket = (int (*)(const PGconn *))real_libpq_dep("PQsocket");
		pq_notifies = (PGnotify * (*)(PGconn *))real_libpq_dep("PQnotifies");
	}
	if (!pq_socket || !pq_notifies) {
		snprintf(err, size, "PQsocket or PQnotifies not found in libpq");
		return -1;
	}
	lost();
	classid = cls;
	/* Ours first: the policy's conninfo (expanded from dbname) may set its
	 * own keepalives; the application_name is always ours. */
	const char *kw[] = { "connect_timeout", "keepalives", "keepalives_idle",
	                     "keepalives_interval", "keepalives_count", "tcp_user_timeout",
	                     "dbname", "application_name", NULL };
	const char *val[] = { "3", "1", STR(COORD_KEEPALIVES_IDLE), STR(COORD_KEEPALIVES_INTERVAL),
	                      STR(COORD_KEEPALIVES_COUNT), STR(COORD_TCP_USER_TIMEOUT), conninfo,
	                      appname, NULL };
	conn = real.PQconnectdbParams(kw, val, 1);
	if (!conn || real.PQstatus(conn) != CONNECTION_OK) {
		one_line(err, size, conn ? real.PQerrorMessage(conn) : "out of memory");
		lost();
		return -1;
	}
	/* libpq sets FD_CLOEXEC on its socket; make sure: an exec()ed program
	 * must not keep the leader's session alive. */
	int fd = pq_socket(conn);
	if (fd >= 0)
		fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
	/* The server's side of the same session gives up later than ours
	 * (coord.h): a host cut off stops using its lease before the server
	 * frees it for others. */
	struct coord_keepalive k;
	coord_keepalive_of(conninfo, &k);
	char sql[320];
	snprintf(sql, sizeof sql, "set tcp_keepalives_idle = %d; set tcp_keepalives_interval = %d; "
	         "set tcp_keepalives_count = %d; set tcp_user_timeout = %d; listen pqshim_%u",
	         COORD_SERVER_IDLE(k.idle), COORD_SERVER_INTERVAL(k.interval), k.count,
	         COORD_SERVER_USER_TIMEOUT(k.user_timeout), classid);
	PGresult *r = run(sql, PGRES_COMMAND_OK);
	if (!r) {
		snprintf(err, size, "could not LISTEN on the coordinator");
		lost();
		return -1;
	}
	real.PQclear(r);
	return 0;
}

void coord_close(void)
{
	lost();
}

void coord_forget(void)
{
	/* The parent's PGconn, copied by fork: close our copy of the socket
	 * (the session stays the parent's) and never touch it again. */
	if (conn && pq_socket) {
		int fd = pq_socket(conn);
		if (fd >= 0)
			close(fd);
	}
	conn = NULL;             /* its memory is the parent's copy: leaked */
}

/* Notifications libpq has read (during a statement, or just now): 1 if
 * one came from another session. */
static int drain_notifies(void)
{
	int others = 0, self = real.PQbackendPID(conn);
	PGnotify *note;
	while ((note = pq_notifies(conn))) {
		if (note->be_pid != self)
			others = 1;
		real.PQfreemem(note);
	}
	return others;
}

int coord_wait(int ms)
{
	if (!conn)
		return -1;
	/* What arrived while a statement ran is in libpq's queue already: the
	 * socket would not say so. */
	if (drain_notifies())
		return 1;
	struct pollfd p = { pq_socket(conn), POLLIN, 0 };
	if (p.fd < 0)
		return -1;
	int n = poll(&p, 1, ms);
	if (n <= 0)
		return 0;
	if (!real.PQconsumeInput(conn) || real.PQstatus(conn) != CONNECTION_OK) {
		lost();
		return -1;
	}
	return drain_notifies();
}

/* "{1,2,3}": the keys held, for an int[] literal. */
static char *keys_literal(const uint32_t *keys, uint32_t n)
{
	size_t size = 3 + (size_t)n * 11;
	char *s = malloc(size), *p = s;
	if (!s)
		return NULL;
	*p++ = '{';
	for (uint32_t i = 0; i < n; i++)
		p += snprintf(p, size - (size_t)(p - s), "%s%u", i ? "," : "", keys[i]);
	*p++ = '}';
	*p = '\0';
	return s;
}

/* Run head + "{k1,k2,...}" + tail (head and tail already formatted). */
static PGresult *run_keys(const char *head, const uint32_t *keys, uint32_t n, const char *tail)
{
	char *lit = keys_literal(keys, n);
	size_t size = (lit ? strlen(lit) : 0) + strlen(head) + strlen(tail) + 1;
	char *sql = lit ? malloc(size) : NULL;
	PGresult *r = NULL;
	if (sql) {
		snprintf(sql, size, "%s%s%s", head, lit, tail);
		r = run(sql, PGRES_TUPLES_OK);
	}
	free(lit);
	free(sql);
	return r;
}

int coord_lock_slots(uint32_t max, uint32_t *held, uint32_t *nheld, uint32_t n)
{
	if (!conn)
		return -1;
	char head[128], tail[256];
	snprintf(head, sizeof head, "select k from (select k from generate_series(0, %u) k "
	         "where case when k = any('", max - 1);
	/* Free = nobody holds it in any mode (the exclusive try); then held
	 * shared, so that the host's standby can hold it too (lease_seg.h). */
	snprintf(tail, sizeof tail, "'::int[]) then false else pg_try_advisory_lock(%u, k) end limit %u) s "
	         "where case when pg_advisory_lock_shared(%u, k)::text = '' then "
	         "pg_advisory_unlock(%u, k) else false end", classid, n, classid, classid);
	PGresult *r = run_keys(head, held, *nheld, tail);
	if (!r)
		return conn ? 0 : -1;
	int got = real.PQntuples(r);
	for (int i = 0; i < got; i++)
		held[(*nheld)++] = (uint32_t)strtoul(real.PQgetvalue(r, i, 0), NULL, 10);
	real.PQclear(r);
	return got;
}

int coord_unlock_slots(uint32_t *held, uint32_t *nheld, uint32_t n)
{
	if (!conn)
		return -1;
	if (n > *nheld)
		n = *nheld;
	char head[128], tail[128];
	snprintf(head, sizeof head, "select count(*) filter (where not pg_advisory_unlock_shared(%u, k)) "
	         "from unnest('", classid);
	snprintf(tail, sizeof tail, "'::int[]) k; select pg_notify('pqshim_%u', 'free')", classid);
	/* PQexec returns the last result: the notify's. */
	PGresult *r = run_keys(head, held + *nheld - n, n, tail);
	if (!r)
		return conn ? 0 : -1;
	real.PQclear(r);
	*nheld -= n;
	return 0;
}

int coord_want(int on)
{
	char sql[160];
	if (on)
		snprintf(sql, sizeof sql, "select pg_try_advisory_lock_shared(%u, %u); "
		         "select pg_notify('pqshim_%u', 'want')", classid, LEASE_KEY_WANT, classid);
	else
		snprintf(sql, sizeof sql, "select pg_advisory_unlock_shared(%u, %u)", classid,
		         LEASE_KEY_WANT);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	real.PQclear(r);
	return 0;
}

int coord_census(struct coord_host *hosts, int max, uint64_t *server_ms)
{
	char sql[640];
	snprintf(sql, sizeof sql,
	         "select l.pid, count(*) filter (where l.objid < %u::oid), "
	         "bool_or(l.objid = %u::oid), coalesce(max(a.application_name), ''), "
	         "(extract(epoch from clock_timestamp()) * 1000)::bigint "
	         "from pg_locks l left join pg_stat_activity a on a.pid = l.pid "
	         "where l.locktype = 'advisory' and l.granted and l.objsubid = 2 "
	         "and l.classid = %u::oid and l.database = (select oid from pg_database "
	         "where datname = current_database()) "
	         "and coalesce(a.application_name, '') not like '" COORD_STANDBY_PREFIX "%%' "
	         "group by l.pid order by l.pid",
	         LEASE_KEY_WANT, LEASE_KEY_WANT, classid);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	int n = real.PQntuples(r);
	if (n > max)
		n = max;
	for (int i = 0; i < n; i++) {
		hosts[i].pid = atoi(real.PQgetvalue(r, i, 0));
		hosts[i].slots = (uint32_t)strtoul(real.PQgetvalue(r, i, 1), NULL, 10);
		hosts[i].wants = real.PQgetvalue(r, i, 2)[0] == 't';
		snprintf(hosts[i].appname, sizeof hosts[i].appname, "%s", real.PQgetvalue(r, i, 3));
		*server_ms = strtoull(real.PQgetvalue(r, i, 4), NULL, 10);
	}
	real.PQclear(r);
	return n;
}

int coord_publish(const char *appname)
{
	if (!conn)
		return -1;
	char *lit = real.PQescapeLiteral(conn, appname, strlen(appname));
	if (!lit)
		return 0;
	char sql[256];
	snprintf(sql, sizeof sql, "select set_config('application_name', %s, false)", lit);
	real.PQfreemem(lit);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	real.PQclear(r);
	return 0;
}

/* The slot keys a session holds (pid 0: this one), as a relation "k". */
static void keys_of(char *buf, size_t size, int pid)
{
	char who[32];
	if (pid)
		snprintf(who, sizeof who, "%d", pid);
	else
		snprintf(who, sizeof who, "pg_backend_pid()");
	snprintf(buf, size, "(select distinct objid::int k from pg_locks where locktype = 'advisory' "
	         "and granted and objsubid = 2 and classid = %u::oid and objid < %u::oid and pid = %s "
	         "and database = (select oid from pg_database where datname = current_database()))",
	         classid, LEASE_KEY_WANT, who);
}

int coord_mirror(const uint32_t *keys, uint32_t nkeys, int leader_pid)
{
	if (!conn)
		return -1;
	char m[400], *lit = keys_literal(keys, nkeys);
	size_t size = (lit ? strlen(lit) : 0) + 1600;
	char *sql = lit ? malloc(size) : NULL;
	if (!sql) {
		free(lit);
		return 1;
	}
	keys_of(m, sizeof m, 0);
	/* CASE: the membership test first, then the lock (a plain AND may be
	 * evaluated in any order, and a shared lock taken twice needs two
	 * unlocks).  A key is taken only while the leader's session holds it:
	 * then no other host's can (they take a key only when nobody holds
	 * it), and a list the leader published before it lost its session
	 * gives nothing.  The host's slots come free for others only once both
	 * sessions let them go: tell them when we do. */
	snprintf(sql, size,
	         "with l as materialized (select distinct unnest('%s'::int[]) k), m as materialized %s, "
	         "a as (select count(*) n from l where case when k in (select k from m) then false "
	         "when not exists (select 1 from pg_locks x where x.pid = %d and x.locktype = 'advisory' "
	         "and x.granted and x.objsubid = 2 and x.classid = %u::oid and x.objid = k::oid) "
	         "then false else pg_try_advisory_lock_shared(%u, k) end), "
	         "d as (select count(*) n from m where case when k in (select k from l) then false "
	         "else pg_advisory_unlock_shared(%u, k) end) "
	         "select a.n, d.n, case when d.n > 0 then pg_notify('pqshim_%u', 'free')::text end "
	         "from a, d", lit, m, leader_pid, classid, classid, classid, classid);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	free(lit);
	free(sql);
	if (!r)
		return conn ? 1 : -1;
	real.PQclear(r);
	return 0;
}

/* Append to held (room keys in all) the keys the statement returns. */
static int fetch_keys(const char *sql, uint32_t *held, uint32_t *nheld, uint32_t room)
{
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	int n = real.PQntuples(r), got = 0;
	for (int i = 0; i < n && *nheld < room; i++, got++)
		held[(*nheld)++] = (uint32_t)strtoul(real.PQgetvalue(r, i, 0), NULL, 10);
	real.PQclear(r);
	return got;
}

int coord_adopt(int pid, uint32_t *held, uint32_t *nheld, uint32_t room)
{
	if (!conn)
		return -1;
	if (*nheld >= room)
		return 0;
	char o[400], *lit = keys_literal(held, *nheld), sql[1024];
	if (!lit)
		return 0;
	keys_of(o, sizeof o, pid);
	snprintf(sql, sizeof sql, "select k from %s o where case when k = any('%s'::int[]) then false "
	         "else pg_try_advisory_lock_shared(%u, k) end limit %u", o, lit, classid,
	         room - *nheld);
	free(lit);
	return fetch_keys(sql, held, nheld, room);
}

int coord_own_slots(uint32_t *held, uint32_t *nheld, uint32_t room)
{
	if (!conn)
		return -1;
	char o[400], sql[500];
	keys_of(o, sizeof o, 0);
	snprintf(sql, sizeof sql, "select k from %s o order by k", o);
	*nheld = 0;
	return fetch_keys(sql, held, nheld, room);
}
