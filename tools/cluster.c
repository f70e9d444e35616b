/*
 * cluster.c - the cluster part of `pqshim stat` and `top` (see cluster.h).
 *
 * One connection to the coordinator is kept between calls (top asks every
 * second); a failure to reach it is shown, never fatal: the segment's own
 * figures are shown anyway.
 */
#include "cluster.h"
#include "coord.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

static PGconn *coord;
static char coord_info[POLICY_STR_MAX];
static struct cluster_view view;          /* the last one read ... */
static const struct snapshot *view_of;    /* ... and for which snapshot */

static const struct cluster_view *view_for(const struct snapshot *s)
{
	return s == view_of && view.on ? &view : NULL;
}

/* host, hostaddr, port, dbname, user of a conninfo: never the password. */
static void describe(const char *conninfo, char *buf, size_t size)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	buf[0] = '\0';
	if (!opts) {
		snprintf(buf, size, "(unparsable conninfo)");
		PQfreemem(err);
		return;
	}
	const char *want[] = { "host", "hostaddr", "port", "dbname", "user" };
	size_t used = 0;
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++)
		for (PQconninfoOption *o = opts; o->keyword; o++)
			if (!strcmp(o->keyword, want[w]) && o->val && *o->val && used < size) {
				int n = snprintf(buf + used, size - used, "%s%s=%s", used ? " " : "",
				                 o->keyword, o->val);
				used += n > 0 ? (size_t)n : 0;
			}
	PQconninfoFree(opts);
}

static PGconn *reach(const char *conninfo, char *err, size_t size)
{
	if (coord && (PQstatus(coord) != CONNECTION_OK || strcmp(coord_info, conninfo) != 0)) {
		PQfinish(coord);
		coord = NULL;
	}
	if (coord)
		return coord;
	const char *kw[] = { "connect_timeout", "dbname", "application_name", NULL };
	const char *val[] = { "2", conninfo, "pqshim stat", NULL };
	coord = PQconnectdbParams(kw, val, 1);
	if (PQstatus(coord) != CONNECTION_OK) {
		snprintf(err, size, "%s", PQerrorMessage(coord));
		size_t n = strlen(err);
		while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
			err[--n] = '\0';
		PQfinish(coord);
		coord = NULL;
		return NULL;
	}
	snprintf(coord_info, sizeof coord_info, "%s", conninfo);
	return coord;
}

/* "pqshim <classid> <host> a=<n> w=<n>", as lease.c publishes it. */
static void parse_appname(const char *app, struct cluster_host *h)
{
	char host[LEASE_HOST_MAX] = "";
	unsigned cls, a = 0, w = 0;
	int n = sscanf(app, "pqshim %u %63s a=%u w=%u", &cls, host, &a, &w);
	if (n >= 2)
		snprintf(h->host, sizeof h->host, "%s", host);
	if (n == 4) {
		h->active = a;
		h->waiting = w;
	}
}

static void read_hosts(PGconn *c, struct cluster_view *v, uint32_t classid)
{
	char sql[1400];
	/* Every leader of this class: the sessions that hold its locks and
	 * those that announce themselves by name (a leader with no slot); a
	 * standby (lease_seg.h) holds its leader's slots again: not a host. */
	snprintf(sql, sizeof sql,
	         "with l as (select pid, count(*) filter (where objid < %u::oid) as slots, "  /* not the lanes' */
	         "bool_or(objid = %u::oid) as wants from pg_locks where locktype = 'advisory' "
	         "and granted and objsubid = 2 and classid = %u::oid and database = "
	         "(select oid from pg_database where datname = current_database()) and pid not in "
	         "(select pid from pg_stat_activity where application_name like '" COORD_STANDBY_PREFIX "%%') "
	         "group by pid), "
	         "a as (select pid, application_name from pg_stat_activity "
	         "where datname = current_database() and application_name like 'pqshim %u %%') "
	         "select coalesce(l.pid, a.pid), coalesce(l.slots, 0), coalesce(l.wants, false), "
	         "coalesce(a.application_name, (select application_name from pg_stat_activity s "
	         "where s.pid = l.pid), '') from l full join a on a.pid = l.pid order by 1",
	         LEASE_KEY_LANE(0, 0), LEASE_KEY_WANT, classid, classid);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(v->error, sizeof v->error, "%s", PQresultErrorMessage(r));
		PQclear(r);
		return;
	}
	v->reached = 1;
	int n = PQntuples(r);
	for (int i = 0; i < n && v->nhosts < CLUSTER_MAX_HOSTS; i++) {
		struct cluster_host *h = &v->hosts[v->nhosts++];
		memset(h, 0, sizeof *h);
		h->pid = atoi(PQgetvalue(r, i, 0));
		h->leased = (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10);
		h->wants = PQgetvalue(r, i, 2)[0] == 't';
		snprintf(h->host, sizeof h->host, "?");
		parse_appname(PQgetvalue(r, i, 3), h);
		v->held += h->leased;
	}
	PQclear(r);
}

/* The lanes' slots held by every host (the leaders' sessions: a standby
 * holds the same keys again), and who holds the gate exclusive. */
static void read_lanes(PGconn *c, struct cluster_view *v, uint32_t classid)
{
	char sql[900];
	snprintf(sql, sizeof sql,
	         "select case when objid = %u::oid then -1 else (objid::int8 >> 24)::int - 1 end, "
	         "count(distinct objid) from pg_locks where locktype = 'advisory' and granted "
	         "and objsubid = 2 and classid = %u::oid and database = (select oid from pg_database "
	         "where datname = current_database()) and ((objid >= %u::oid and objid < %u::oid "
	         "and (objid::int8 & %u) <> %u) or (objid = %u::oid and mode = 'ExclusiveLock')) "
	         "group by 1", LEASE_KEY_GATE, classid, LEASE_KEY_LANE(0, 0), LEASE_KEY_SLOTS_END,
	         LEASE_LANE_WANT_K, LEASE_LANE_WANT_K, LEASE_KEY_GATE);
	PGresult *r = PQexec(c, sql);
	for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
		int lane = atoi(PQgetvalue(r, i, 0));
		uint32_t n = (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10);
		if (lane < 0)
			v->gate_exclusive = n;
		for (int k = 0; k < v->nlanes; k++)
			if (lane > 0 && v->lanes[k].index == (unsigned)lane)
				v->lanes[k].held = n;
	}
	PQclear(r);
}

void cluster_read(const struct segment *seg, const struct snapshot *s)
{
	struct cluster_view *v = &view;
	view_of = s;
	memset(v, 0, sizeof *v);
	const struct snap_policy *p = &s->policy;
	v->on = seg->hdr && seg->hdr->cap.scope == SCOPE_CLUSTER;
	if (!v->on)
		return;
	/* A racy copy: shown to humans, every field is read whole. */
	memcpy(&v->lease, &seg->hdr->lease, sizeof v->lease);
	v->lease.host[sizeof v->lease.host - 1] = '\0';
	v->lease.error[sizeof v->lease.error - 1] = '\0';
	/* A leader gone (killed, or its image exec()ed) leads no more: none. */
	if (!seg_pid_alive(seg, v->lease.leader_pid, v->lease.leader_start))
		v->lease.leader_pid = 0;
	if (!lease_standby_alive(seg, &v->lease))
		v->lease.standby_pid = 0;
	v->max_active = p->loaded ? p->pol.max_active : v->lease.max_active;
	if (!p->loaded || !p->pol.coordinator[0]) {
		snprintf(v->coordinator, sizeof v->coordinator, "%.*s", (int)sizeof v->coordinator - 1,
		         v->lease.coordinator);
		snprintf(v->error, sizeof v->error, "%s", p->loaded ? "no coordinator in the policy"
		         : "the policy could not be read: the coordinator is unknown");
		return;
	}
	describe(p->pol.coordinator, v->coordinator, sizeof v->coordinator);
	/* the capped lanes: the policy's cap, this host's share */
	const struct seg_lanes *SL = &seg->hdr->cap.lanes;
	for (int i = 0; i < p->pol.nlanes && i + 1 < CAP_LANES; i++) {
		const struct seg_lane *l = &SL->lane[i + 1];
		v->gated |= p->pol.lanes[i].exclusive;
		if (p->pol.lanes[i].exclusive || !p->pol.lanes[i].max_active
		    || strcmp(l->name, p->pol.lanes[i].name) != 0)
			continue;
		struct cluster_lane *cl = &v->lanes[v->nlanes++];
		snprintf(cl->name, sizeof cl->name, "%s", p->pol.lanes[i].name);
		cl->max_active = p->pol.lanes[i].max_active;
		uint32_t m = __atomic_load_n(&l->max, __ATOMIC_RELAXED);
		cl->leased = m == CAP_LANE_NONE ? 0 : m;
		cl->index = (unsigned)i + 1;
	}
	PGconn *c = reach(p->pol.coordinator, v->error, sizeof v->error);
	if (c) {
		read_hosts(c, v, lease_classid(seg->name));
		read_lanes(c, v, lease_classid(seg->name));
	}
	for (int i = 0; i < v->nhosts; i++) {
		struct cluster_host *h = &v->hosts[i];
		if (v->lease.backend_pid && h->pid == (int)v->lease.backend_pid) {
			/* this host: the segment's figures, not a second old */
			h->local = 1;
			h->active = s->cap.active;
			h->waiting = s->cap.waiting;
		}
	}
}

static const char *gate_word(uint32_t m)
{
	return m == GATE_EXCL ? "exclusive" : m == GATE_SHARED ? "shared" : "none";
}

void cluster_json(FILE *out, const struct snapshot *s)
{
	const struct cluster_view *v = view_for(s);
	if (!v)
		return;
	const struct seg_lease *L = &v->lease;
	fputs("  \"cluster\": {\"coordinator\": ", out);
	snap_json_string(out, v->coordinator);
	fprintf(out, ", \"state\": \"%s\", \"classid\": %u, \"host\": ",
	        lease_state_word(L->state), L->classid);
	snap_json_string(out, L->host);
	fprintf(out, ", \"leader_pid\": %d, \"leased\": %u, \"wanting\": %s, \"max_active\": %u, "
	        "\"held\": ", L->leader_pid, L->leased, L->wanting ? "true" : "false",
	        v->max_active);
	if (v->reached)
		fprintf(out, "%u", v->held);
	else
		fputs("null", out);
	fputs(",\n              \"hosts\": [", out);
	for (int i = 0; i < v->nhosts; i++) {
		const struct cluster_host *h = &v->hosts[i];
		fprintf(out, "%s{\"host\": ", i ? ", " : "");
		snap_json_string(out, h->host);
		fprintf(out, ", \"leased\": %u, \"active\": %u, \"waiting\": %u, \"wants\": %s, "
		        "\"backend_pid\": %d, \"this_host\": %s}", h->leased, h->active, h->waiting,
		        h->wants ? "true" : "false", h->pid, h->local ? "true" : "false");
	}
	fprintf(out, "],\n              \"grows\": %llu, \"gives\": %llu, \"leaders\": %llu, "
	        "\"takeovers\": %llu, \"standby_pid\": ",
	        (unsigned long long)L->grows, (unsigned long long)L->gives,
	        (unsigned long long)L->leaders, (unsigned long long)L->takeovers);
	/* the standby in place: it holds this host's slots again (lease_seg.h) */
	if (L->standby_pid > 0)   /* judged at the read */
		fprintf(out, "%d", L->standby_pid);
	else
		fputs("null", out);
	fputs(",\n              \"lanes\": [", out);
	for (int i = 0; i < v->nlanes; i++) {
		const struct cluster_lane *l = &v->lanes[i];
		fprintf(out, "%s{\"name\": ", i ? ", " : "");
		snap_json_string(out, l->name);
		fprintf(out, ", \"max_active\": %u, \"leased\": %u, \"held\": %u}", l->max_active,
		        l->leased, l->held);
	}
	fputs("], \"gate\": ", out);
	if (v->gated)
		fprintf(out, "{\"this_host\": \"%s\", \"standby\": \"%s\", \"exclusive_waiting_hosts\": %u, "
		        "\"held_exclusive\": %u, \"exclusive_grants\": %llu, \"last_wait_ms\": %.1f}",
		        gate_word(L->gate_leader), gate_word(L->gate_standby), L->excl_hosts,
		        v->gate_exclusive, (unsigned long long)L->gate_excl, L->gate_wait_ns / 1e6);
	else
		fputs("null", out);
	fprintf(out, ", \"coordinator_statements\": %llu, \"error\": ",
	        (unsigned long long)L->statements);
	const char *err = v->error[0] ? v->error : L->error;
	if (err[0])
		snap_json_string(out, err);
	else
		fputs("null", out);
	fputs("},\n", out);
}

void cluster_table(FILE *out, const struct snapshot *s)
{
	const struct cluster_view *v = view_for(s);
	if (!v)
		return;
	const struct seg_lease *L = &v->lease;
	char coordinator[LEASE_CONNINFO_MAX], host[LEASE_HOST_MAX], err[LEASE_ERROR_MAX];
	snap_printable(coordinator, sizeof coordinator, v->coordinator);
	snap_printable(host, sizeof host, L->host);
	fprintf(out, "cluster %s  coordinator %s  this host %s leases %u (leader pid %d)",
	        lease_state_word(L->state), coordinator, host[0] ? host : "?", L->leased,
	        L->leader_pid);
	if (v->reached)
		fprintf(out, "  held %u/%u\n", v->held, v->max_active);
	else
		fprintf(out, "  held ?/%u\n", v->max_active);
	if (L->state == LEASE_OPEN)
		fprintf(out, "cluster: the coordinator is unreachable: the host cap is in force "
		        "(on_error = fail-open)\n");
	const char *e = v->error[0] ? v->error : L->error;
	if (e[0]) {
		snap_printable(err, sizeof err, e);
		fprintf(out, "cluster error: %s\n", err);
	}
	for (int i = 0; i < v->nhosts; i++) {
		const struct cluster_host *h = &v->hosts[i];
		snap_printable(host, sizeof host, h->host);
		fprintf(out, "  host %-20s leased %3u  active %3u  waiting %3u%s%s\n", host, h->leased,
		        h->active, h->waiting, h->wants ? "  wants more" : "",
		        h->local ? "  (this host)" : "");
	}
	for (int i = 0; i < v->nlanes; i++) {
		const struct cluster_lane *l = &v->lanes[i];
		char name[CAP_LANE_NAME];
		snap_printable(name, sizeof name, l->name);
		fprintf(out, "  lane %-20s held %3u/%u in the cluster, this host leases %u\n", name,
		        l->held, l->max_active, l->leased);
	}
	if (v->gated)
		fprintf(out, "  gate: this host %s (standby %s), hosts waiting for it exclusive %u, "
		        "exclusive grants here %llu (last wait %.1f ms)\n", gate_word(L->gate_leader),
		        gate_word(L->gate_standby), L->excl_hosts, (unsigned long long)L->gate_excl,
		        L->gate_wait_ns / 1e6);
}

void cluster_prometheus(FILE *out, const struct snapshot *s)
{
	const struct cluster_view *v = view_for(s);
	if (!v)
		return;
	const struct seg_lease *L = &v->lease;
	fputs("# HELP pqshim_cluster_up 1 while this host holds its lease from the coordinator.\n"
	      "# TYPE pqshim_cluster_up gauge\n", out);
	fprintf(out, "pqshim_cluster_up %d\n", L->state == LEASE_OK);
	fputs("# HELP pqshim_cluster_fail_open 1 while the host cap stands in for the cluster's.\n"
	      "# TYPE pqshim_cluster_fail_open gauge\n", out);
	fprintf(out, "pqshim_cluster_fail_open %d\n", L->state == LEASE_OPEN);
	fputs("# HELP pqshim_cluster_leased Slots of the cluster this host holds.\n"
	      "# TYPE pqshim_cluster_leased gauge\n", out);
	fprintf(out, "pqshim_cluster_leased %u\n", L->leased);
	if (v->reached) {
		fputs("# HELP pqshim_cluster_held Slots held on the coordinator by every host.\n"
		      "# TYPE pqshim_cluster_held gauge\n", out);
		fprintf(out, "pqshim_cluster_held %u\n", v->held);
	}
	static const char *const what[3][2] = {
		{ "pqshim_cluster_host_leased", "Slots a host holds on the coordinator." },
		{ "pqshim_cluster_host_active", "Active transactions of a host (published each second)." },
		{ "pqshim_cluster_host_waiting", "Waiters of a host (published each second)." },
	};
	for (int k = 0; k < 3; k++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", what[k][0], what[k][1], what[k][0]);
		for (int i = 0; i < v->nhosts; i++) {
			const struct cluster_host *h = &v->hosts[i];
			char host[LEASE_HOST_MAX];
			size_t j = 0;
			for (const char *c = h->host; *c && j + 1 < sizeof host; c++)
				if (*c != '"' && *c != '\\' && *c != '\n')
					host[j++] = *c;
			host[j] = '\0';
			fprintf(out, "%s{host=\"%s\",pid=\"%d\"} %u\n", what[k][0], host, h->pid,
			        k == 0 ? h->leased : k == 1 ? h->active : h->waiting);
		}
	}
	fputs("# HELP pqshim_cluster_coordinator_statements_total Statements this host's leaders sent "
	      "to the coordinator.\n# TYPE pqshim_cluster_coordinator_statements_total counter\n", out);
	fprintf(out, "pqshim_cluster_coordinator_statements_total %llu\n",
	        (unsigned long long)L->statements);
}
