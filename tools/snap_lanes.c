/*
 * snap_lanes.c - the lanes of a segment as the tool shows them.  The lane
 * table lives in the cap (cap.h, "Lanes"), kept under the cap's lock; the
 * tool copies it without the lock, which may show a count a moment old,
 * never a torn name (names change only when a reload renumbers lanes).
 */
#include "snapshot.h"
#include "cap_lanes.h"

#include <string.h>

static uint64_t load64(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

void snap_read_lanes(const struct seg_header *h, struct snapshot *s)
{
	const struct seg_lanes *L = &h->cap.lanes;
	struct snap_lanes *out = &s->lanes;
	uint32_t n = __atomic_load_n(&L->nlanes, __ATOMIC_ACQUIRE);
	if (n > CAP_LANES - 1)
		n = CAP_LANES - 1;
	out->n = (int)n + 1;
	for (int i = 0; i < out->n; i++) {
		const struct seg_lane *l = &L->lane[i];
		struct snap_lane *o = &out->lane[i];
		memcpy(o->name, l->name, sizeof o->name);
		o->name[sizeof o->name - 1] = '\0';
		if (!o->name[0])
			snprintf(o->name, sizeof o->name, "default");
		o->max_active = __atomic_load_n(&l->max, __ATOMIC_RELAXED);
		/* scope = cluster: the segment has this host's share; the lane's
		 * cap is the policy's (the cluster's) */
		for (int k = 0; i > 0 && s->policy.loaded && k < s->policy.pol.nlanes; k++)
			if (s->policy.pol.scope == SCOPE_CLUSTER
			    && strcmp(s->policy.pol.lanes[k].name, o->name) == 0)
				o->max_active = s->policy.pol.lanes[k].max_active;
		if (o->max_active == CAP_LANE_NONE)
			o->max_active = 0;
		o->active = lw_count(__atomic_load_n(&l->word, __ATOMIC_RELAXED));
		o->waiting = __atomic_load_n(&l->waiting, __ATOMIC_RELAXED);
		o->exclusive = __atomic_load_n(&l->exclusive, __ATOMIC_RELAXED);
		o->priority = __atomic_load_n(&l->priority, __ATOMIC_RELAXED);
		o->acquired = load64(&l->acquired);
		o->waits = load64(&l->waits);
		o->timeouts = load64(&l->timeouts);
		o->wait_ns_sum = load64(&l->wait_ns_sum);
		for (unsigned b = 0; b < CAP_HIST_BUCKETS; b++)
			o->hist[b] = load64(&l->hist[b]);
		o->wait_ms_p99 = snap_quantile_ms(o->hist, 0.99);
	}
	if (n == 0) {
		/* no lanes: the default lane is the whole cap */
		struct snap_lane *d = &out->lane[0];
		d->active = s->cap.active;
		d->waiting = s->cap.waiting;
		d->waits = s->cap.sems[SEM_ACTIVE].waits;
		d->timeouts = s->cap.sems[SEM_ACTIVE].timeouts;
		d->acquired = s->cap.sems[SEM_ACTIVE].acquired;
		memcpy(d->hist, s->cap.sems[SEM_ACTIVE].hist, sizeof d->hist);
		d->wait_ns_sum = s->cap.sems[SEM_ACTIVE].wait_ns_sum;
		d->wait_ms_p99 = snap_quantile_ms(d->hist, 0.99);
	}   /* (lane waiters count in the word's waiting: s->cap.waiting has them) */
	if (s->cap.max_active == CAP_UNCAPPED)
		s->cap.max_active = 0;
	if (s->cap.sems[SEM_ACTIVE].max == CAP_UNCAPPED)
		s->cap.sems[SEM_ACTIVE].max = 0;
}

const char *snap_lane_name(const struct snapshot *s, const struct seg_conn *c)
{
	return c->lane < s->lanes.n ? s->lanes.lane[c->lane].name : "default";
}

void snap_json_lanes(FILE *out, const struct snapshot *s)
{
	fputs("  \"lanes\": [", out);
	for (int i = 0; i < s->lanes.n; i++) {
		const struct snap_lane *l = &s->lanes.lane[i];
		fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", out);
		snap_json_string(out, l->name);
		fprintf(out, ", \"max_active\": %u, \"active\": %u, \"waiting\": %u, \"exclusive\": %s, "
		        "\"priority\": %d, \"waits\": %llu, \"timeouts\": %llu, \"wait_ms_p99\": %.3f, "
		        "\"acquired\": %llu, \"wait_ms_sum\": %.3f}",
		        l->max_active, l->active, l->waiting, l->exclusive ? "true" : "false",
		        l->priority, (unsigned long long)l->waits, (unsigned long long)l->timeouts,
		        l->wait_ms_p99, (unsigned long long)l->acquired, l->wait_ns_sum / 1e6);
	}
	fputs("\n  ],\n", out);
}

void snap_lane_label(char *buf, size_t size, const char *name)
{
	size_t n = 0;
	const char *end = "\"";
	n += (size_t)snprintf(buf, size, "lane=\"");
	for (const char *p = name; *p && n + 3 + strlen(end) < size; p++) {
		if (*p == '\\' || *p == '"')
			buf[n++] = '\\';
		if (*p == '\n') {
			buf[n++] = '\\';
			buf[n++] = 'n';
		} else {
			buf[n++] = *p;
		}
	}
	snprintf(buf + n, size - n, "%s", end);
}

static void prom_lane_label(FILE *out, const char *name)
{
	char label[SNAP_LANE_LABEL_MAX];
	snap_lane_label(label, sizeof label, name);
	fputs(label, out);
}

static void prom_lane_gauge(FILE *out, const struct snapshot *s, const char *name,
                            const char *type, const char *help, size_t off)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (int i = 0; i < s->lanes.n; i++) {
		const struct snap_lane *l = &s->lanes.lane[i];
		const char *field = (const char *)l + off;
		unsigned long long v = (off == offsetof(struct snap_lane, waits)
		                        || off == offsetof(struct snap_lane, timeouts)
		                        || off == offsetof(struct snap_lane, acquired))
		                       ? (unsigned long long)*(const uint64_t *)field
		                       : (unsigned long long)*(const uint32_t *)field;
		fprintf(out, "%s{", name);
		prom_lane_label(out, l->name);
		fprintf(out, "} %llu\n", v);
	}
}

void snap_prom_lanes(FILE *out, const struct snapshot *s)
{
	prom_lane_gauge(out, s, "pqshim_lane_max_active", "gauge",
	                "A lane's own cap (0: only the global one).",
	                offsetof(struct snap_lane, max_active));
	prom_lane_gauge(out, s, "pqshim_lane_active", "gauge", "Slots a lane holds now.",
	                offsetof(struct snap_lane, active));
	prom_lane_gauge(out, s, "pqshim_lane_waiting", "gauge", "Callers waiting in a lane now.",
	                offsetof(struct snap_lane, waiting));
	prom_lane_gauge(out, s, "pqshim_lane_waits_total", "counter",
	                "A lane's slot acquisitions that had to wait.", offsetof(struct snap_lane, waits));
	prom_lane_gauge(out, s, "pqshim_lane_wait_timeouts_total", "counter",
	                "A lane's waits that gave up at its wait_timeout.",
	                offsetof(struct snap_lane, timeouts));
}

void snap_table_lanes(FILE *out, const struct snapshot *s)
{
	if (s->lanes.n <= 1)
		return;
	for (int i = 0; i < s->lanes.n; i++) {
		const struct snap_lane *l = &s->lanes.lane[i];
		char name[CAP_LANE_NAME], max[16];
		snap_printable(name, sizeof name, l->name);
		snprintf(max, sizeof max, l->max_active ? "%u" : "-", l->max_active);
		fprintf(out, "lane %-16s active %u/%s  waiting %u  priority %d%s  waits %llu  "
		        "timeouts %llu  wait p99 %.3fms\n", name, l->active, max, l->waiting, l->priority,
		        l->exclusive ? "  EXCLUSIVE" : "", (unsigned long long)l->waits,
		        (unsigned long long)l->timeouts, l->wait_ms_p99);
	}
}
