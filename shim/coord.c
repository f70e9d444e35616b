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

struct coord_keepalive { int idle, interval, count, user_timeout; };

/* The host's keepalive settings for a conninfo (ours unless it sets them). */
static void coord_keepalive_of(const char *conninfo, struct coord_keepalive *k)
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

/* Append to held (room keys in all) the keys r's first column lists. */
static int append_keys(PGresult *r, uint32_t *held, uint32_t *nheld, uint32_t room)
{
	int n = real.PQntuples(r), got = 0;
	for (int i = 0; i < n && *nheld < room; i++, got++)
		held[(*nheld)++] = (uint32_t)strtoul(real.PQgetvalue(r, i, 0), NULL, 10);
	real.PQclear(r);
	return got;
}

int coord_lock_slots(uint32_t base, uint32_t max, uint32_t *held, uint32_t *nheld, uint32_t n)
{
	if (!conn)
		return -1;
	char head[128], tail[256];
	snprintf(head, sizeof head, "select k from (select k from generate_series(%u, %u) k "
	         "where case when k = any('", base, base + max - 1);
	/* Free = nobody holds it in any mode (the exclusive try); then held
	 * shared, so that the host's standby can hold it too (lease_seg.h). */
	snprintf(tail, sizeof tail, "'::int[]) then false else pg_try_advisory_lock(%u, k) end limit %u) s "
	         "where case when pg_advisory_lock_shared(%u, k)::text = '' then "
	         "pg_advisory_unlock(%u, k) else false end", classid, n, classid, classid);
	PGresult *r = run_keys(head, held, *nheld, tail);
	if (!r)
		return conn ? 0 : -1;
	return append_keys(r, held, nheld, *nheld + n);
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

int coord_want(uint32_t key, int on)
{
	char sql[160];
	if (on)
		snprintf(sql, sizeof sql, "select pg_try_advisory_lock_shared(%u, %u); "
		         "select pg_notify('pqshim_%u', 'want')", classid, key, classid);
	else
		snprintf(sql, sizeof sql, "select pg_advisory_unlock_shared(%u, %u)", classid, key);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	real.PQclear(r);
	return 0;
}

int coord_census(struct coord_host *hosts, int max, uint64_t *server_ms)
{
	/* One row per session and group: g 0 the cluster's slots (and WANT,
	 * XWANT), g = l lane l's slots and its WANT key (k = 2^24 - 1; the
	 * keys LEASE_KEY_LANE(l, k), l > 0). */
	char sql[1200];
	snprintf(sql, sizeof sql,
	         "select l.pid, g, count(*) filter (where l.objid < %u::oid and k <> %u), "
	         "bool_or(l.objid = %u::oid or (l.objid < %u::oid and k = %u)), "
	         "bool_or(l.objid = %u::oid), coalesce(max(a.application_name), ''), "
	         "(extract(epoch from clock_timestamp()) * 1000)::bigint "
	         "from pg_locks l left join pg_stat_activity a on a.pid = l.pid, "
	         "lateral (select case when l.objid < 16777216::oid or l.objid >= %u::oid then 0 "
	         "else (l.objid::int8 >> 24)::int - 1 end g, (l.objid::int8 & %u)::int k) x "
	         "where l.locktype = 'advisory' and l.granted and l.objsubid = 2 "
	         "and l.classid = %u::oid and l.database = (select oid from pg_database "
	         "where datname = current_database()) "
	         "and coalesce(a.application_name, '') not like '" COORD_STANDBY_PREFIX "%%' "
	         "group by l.pid, g order by l.pid, g",
	         LEASE_KEY_SLOTS_END, LEASE_LANE_WANT_K, LEASE_KEY_WANT, LEASE_KEY_SLOTS_END,
	         LEASE_LANE_WANT_K, LEASE_KEY_XWANT, LEASE_KEY_SLOTS_END, LEASE_LANE_WANT_K,
	         classid);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	int rows = real.PQntuples(r), n = 0;
	for (int i = 0; i < rows; i++) {
		int pid = atoi(real.PQgetvalue(r, i, 0));
		unsigned gr = (unsigned)atoi(real.PQgetvalue(r, i, 1));
		if (n == 0 || hosts[n - 1].pid != pid) {
			if (n == max)
				break;
			memset(&hosts[n], 0, sizeof hosts[n]);
			hosts[n++].pid = pid;
		}
		struct coord_host *h = &hosts[n - 1];
		if (gr >= COORD_GROUPS)
			continue;
		h->slots[gr] = (uint32_t)strtoul(real.PQgetvalue(r, i, 2), NULL, 10);
		if (real.PQgetvalue(r, i, 3)[0] == 't')
			h->wants |= 1u << gr;
		h->xwant |= real.PQgetvalue(r, i, 4)[0] == 't';
		snprintf(h->appname, sizeof h->appname, "%s", real.PQgetvalue(r, i, 5));
		*server_ms = strtoull(real.PQgetvalue(r, i, 6), NULL, 10);
	}
	real.PQclear(r);
	return n;
}

/* One statement whose single value is a boolean: 1 true, 0 false (or it
 * failed), -1 lost. */
static int run_bool(const char *sql)
{
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	int yes = real.PQntuples(r) > 0 && real.PQgetvalue(r, real.PQntuples(r) - 1, 0)[0] == 't';
	real.PQclear(r);
	return yes;
}

/* "exists: session pid holds key in that mode" (pid 0: true). */
static void held_by(char *buf, size_t size, int pid, uint32_t key, int excl)
{
	if (!pid) {
		snprintf(buf, size, "true");
		return;
	}
	snprintf(buf, size, "exists (select 1 from pg_locks x where x.pid = %d and x.locktype = "
	         "'advisory' and x.granted and x.objsubid = 2 and x.classid = %u::oid and "
	         "x.objid = %u::oid and x.mode = '%s')", pid, classid, key,
	         excl ? "ExclusiveLock" : "ShareLock");
}

int coord_gate_share(int have_s)
{
	/* CASE: in this order.  XWANT held by anyone (a standby's too): an
	 * exclusive lane waits, so take nothing (it cannot starve). */
	char sql[700];
	snprintf(sql, sizeof sql, "select case when exists (select 1 from pg_locks x where "
	         "x.locktype = 'advisory' and x.granted and x.objsubid = 2 and x.classid = %u::oid "
	         "and x.objid = %u::oid and x.database = (select oid from pg_database where "
	         "datname = current_database())) then false "
	         "when not pg_try_advisory_lock_shared(%u, %u) then false "
	         "when %s or pg_try_advisory_lock_shared(%u, %u) then true "
	         "else not pg_advisory_unlock_shared(%u, %u) end",
	         classid, LEASE_KEY_XWANT, classid, LEASE_KEY_GATE, have_s ? "true" : "false",
	         classid, LEASE_KEY_GATE_STANDBY, classid, LEASE_KEY_GATE);
	return run_bool(sql);
}

int coord_try_key(uint32_t key, int excl, int pid, uint32_t if_key, int if_excl)
{
	char cond[400], sql[600];
	held_by(cond, sizeof cond, pid, if_key, if_excl);
	snprintf(sql, sizeof sql, "select case when %s then pg_try_advisory_lock%s(%u, %u) "
	         "else false end", cond, excl ? "" : "_shared", classid, key);
	return run_bool(sql);
}

int coord_unlock_key(uint32_t key, int excl)
{
	char sql[200];
	snprintf(sql, sizeof sql, "select pg_advisory_unlock%s(%u, %u); "
	         "select pg_notify('pqshim_%u', 'free')", excl ? "" : "_shared", classid, key,
	         classid);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	real.PQclear(r);
	return 0;
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
	         "and granted and objsubid = 2 and classid = %u::oid and objid < %u::oid "
	         "and (objid::int8 & %u) <> %u and pid = %s "
	         "and database = (select oid from pg_database where datname = current_database()))",
	         classid, LEASE_KEY_SLOTS_END, LEASE_LANE_WANT_K, LEASE_LANE_WANT_K, who);
}

int coord_mirror(const uint32_t *keys, uint32_t nkeys, int leader_pid)
{
	if (!conn)
		return -1;
	char m[500], *lit = keys_literal(keys, nkeys);
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
	         "w as (select count(*) n from l where k not in (select k from m)), "
	         "a as (select count(*) n from l where case when k in (select k from m) then false "
	         "when not exists (select 1 from pg_locks x where x.pid = %d and x.locktype = 'advisory' "
	         "and x.granted and x.objsubid = 2 and x.classid = %u::oid and x.objid = k::oid) "
	         "then false else pg_try_advisory_lock_shared(%u, k) end), "
	         "d as (select count(*) n from m where case when k in (select k from l) then false "
	         "else pg_advisory_unlock_shared(%u, k) end) "
	         "select a.n, d.n, case when d.n > 0 then pg_notify('pqshim_%u', 'free')::text end, "
	         "w.n from a, d, w", lit, m, leader_pid, classid, classid, classid, classid);
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	free(lit);
	free(sql);
	if (!r)
		return conn ? 1 : -1;
	/* Mirrored only if every key it was to take is taken (one the leader
	 * no longer holds is not: its next list will not name it). */
	int all = real.PQntuples(r) == 1
	          && strcmp(real.PQgetvalue(r, 0, 0), real.PQgetvalue(r, 0, 3)) == 0;
	real.PQclear(r);
	return all ? 0 : 1;
}

/* Append to held (room keys in all) the keys the statement returns. */
static int fetch_keys(const char *sql, uint32_t *held, uint32_t *nheld, uint32_t room)
{
	PGresult *r = run(sql, PGRES_TUPLES_OK);
	if (!r)
		return conn ? 0 : -1;
	return append_keys(r, held, nheld, room);
}

int coord_adopt(int pid, uint32_t *held, uint32_t *nheld, uint32_t room)
{
	if (!conn)
		return -1;
	char o[500], sql[700];
	keys_of(o, sizeof o, pid);
	snprintf(sql, sizeof sql, "select k from %s o where pg_try_advisory_lock_shared(%u, k) "
	         "limit %u", o, classid, room);
	*nheld = 0;
	return fetch_keys(sql, held, nheld, room);
}

int coord_own_slots(uint32_t *held, uint32_t *nheld, uint32_t room)
{
	if (!conn)
		return -1;
	char o[500], sql[600];
	keys_of(o, sizeof o, 0);
	snprintf(sql, sizeof sql, "select k from %s o order by k", o);
	*nheld = 0;
	return fetch_keys(sql, held, nheld, room);
}
