/*
 * switch.c - moving live connections when read-only starts or ends.
 *
 * A connection notices a switch at its next statement (work_begin compares
 * its generation with g.ro_gen).  If it is inside a transaction it waits
 * for the transaction to end.  Otherwise, when the route the policy gives
 * it now differs from where it is:
 *  - migrate: a fresh connection is opened where the policy says, the
 *    session settings the program changed (DateStyle, TimeZone, ...) and
 *    the statements it prepared by name are carried over, and the contents
 *    of the two PGconn structures are exchanged (pqerr.c): the program's
 *    PGconn * stays valid and now talks to the new server; the old
 *    connection is closed (TLS included: pqerr.c points OpenSSL's objects
 *    at their new home).  Connections that cannot be moved that way (GSS
 *    encryption, event procedures) are reset instead.
 *  - reset: the old connection is closed and replaced by a CONNECTION_BAD
 *    one saying why; the program's own reconnect (PQreset included, see
 *    switch_reset) lands where the policy says.
 */
#include "shim.h"
#include "log.h"
#include "pqerr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *target_names[] = { "direct", "primary", "replica" };

/* Read-only as the policy and its flag file say now; on a change, a new
 * generation that every connection will notice at its next statement. */
void readonly_update(void)
{
	int ro = g.pol.ro_enabled;
	if (g.pol.flag_file[0]) {
		struct stat st;
		if (stat(g.pol.flag_file, &st) == 0)
			ro = 1;
	}
	if (ro == __atomic_load_n(&g.read_only, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&g.read_only, ro, __ATOMIC_RELEASE);
	__atomic_fetch_add(&g.ro_gen, 1, __ATOMIC_RELEASE);
	/* every thread's fast connection must look again (work_begin) */
	map_epoch_bump();
	shim_log(LOG_INFO, "read-only %s (%s)", ro ? "on" : "off",
	         g.pol.ro_enabled ? "[read_only] enabled" : g.pol.flag_file);
	struct seg_header *h = g.seg.hdr;
	if (h && __atomic_exchange_n(&h->read_only, (uint32_t)ro, __ATOMIC_ACQ_REL) != (uint32_t)ro) {
		/* the first process to notice times the switch */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		__atomic_store_n(&h->switch_ns, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
		                 __ATOMIC_RELEASE);
		__atomic_store_n(&h->drained_ns, 0, __ATOMIC_RELEASE);
	}
}

/* Open where the policy says now.  NULL and err filled on failure; on
 * success *where holds the arguments used. */
static PGconn *open_routed(struct conn *c, int async, int *target, struct connargs *where,
                           char *err, size_t size)
{
	struct connargs routed = { 0 };
	int redirect = 0;
	*target = route_plan(&c->args, &routed, &redirect);
	t.depth++;
	PGconn *fresh = route_connect(redirect ? &routed : &c->args, async);
	t.depth--;
	connargs_copy(where, redirect ? &routed : &c->args);
	connargs_free(&routed);
	if (redirect && g.seg.hdr)
		seg_add(&g.seg.hdr->totals.redirects, 1);
	if (!fresh) {
		connargs_free(where);
		snprintf(err, size, "out of memory");
		return NULL;
	}
	if (real.PQstatus(fresh) == CONNECTION_BAD) {
		connargs_free(where);
		snprintf(err, size, "%s", real.PQerrorMessage(fresh));
		size_t n = strlen(err);
		if (n && err[n - 1] == '\n')
			err[n - 1] = '\0';
		t.depth++;
		real.PQfinish(fresh);
		t.depth--;
		return NULL;
	}
	return fresh;
}

/* Give the program's PGconn the contents of fresh; close the old ones. */
static void take_over(struct conn *c, PGconn *fresh, int target, struct connargs *where)
{
	pqint_carry_hooks(c->pg, fresh);
	if (real.PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) {
		t.depth++;
		real.PQenterPipelineMode(fresh);   /* the program is in pipeline mode */
		t.depth--;
	}
	pqint_swap(c->pg, fresh);
	t.depth++;
	real.PQfinish(fresh);        /* now the old connection */
	t.depth--;
	session_follow_cancels(c);
	pthread_mutex_lock(&g.lock); /* the drainer reads `where` */
	connargs_free(&c->where);
	c->where = *where;
	where->n = 0;
	c->rec->target = (uint32_t)target;
	track_describe(c);
	pthread_mutex_unlock(&g.lock);
}

static const char *refuse(const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static const char *refuse(const char *sqlstate, const char *fmt, ...)
{
	static TLS char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	t.sqlstate = sqlstate;
	return msg;
}

const char *switch_check(struct conn *c)
{
	unsigned gen = __atomic_load_n(&g.ro_gen, __ATOMIC_ACQUIRE);
	if (!c->routed || !route_enabled()) {
		c->ro_gen = gen;
		return NULL;
	}
	PGTransactionStatusType ts = real.PQtransactionStatus(c->pg);
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE)
		return NULL;         /* moves when its transaction is over */
	struct connargs scratch = { 0 };
	int redirect, now = route_plan(&c->args, &scratch, &redirect);
	connargs_free(&scratch);
	/* Where it should be, and alive (the drainer may have ended its
	 * backend while it sat idle: then it reconnects, even in place). */
	if ((uint32_t)now == c->rec->target && real.PQstatus(c->pg) == CONNECTION_OK
	    && c->rec->backend_pid) {
		c->ro_gen = gen;
		return NULL;
	}
	const char *from = target_names[c->rec->target < 3 ? c->rec->target : 0];
	const char *to = target_names[now < 3 ? now : 0];
	char err[512];
	const char *cannot = "its state cannot change hands (GSS encryption, event procedures, "
	                     "unread notifications)";
	if (g.pol.on_switch == SWITCH_MIGRATE && pqint_can_swap(c->pg)) {
		int target;
		struct connargs where = { 0 };
		PGconn *fresh = open_routed(c, 0, &target, &where, err, sizeof err);
		if (fresh && !pqint_can_swap(fresh)) {
			/* GSS on the new side (or TLS whose OpenSSL objects are
			 * not as pqerr.c knows them): its state cannot change
			 * hands; reset instead. */
			t.depth++;
			real.PQfinish(fresh);
			t.depth--;
			connargs_free(&where);
			goto reset;
		}
		if (!fresh)
			return refuse("08006", "pqshim: could not move the connection from the %s to the %s: %s "
			              "(on_switch = migrate, policy %s)", from, to, err, g.policy_path);
		if (session_carry(c, c->pg, fresh, 1, err, sizeof err) != 0) {
			/* it would fail again at every statement: reset instead */
			t.depth++;
			real.PQfinish(fresh);
			t.depth--;
			connargs_free(&where);
			cannot = err;
			goto reset;
		}
		take_over(c, fresh, target, &where);
		c->ro_gen = gen;
		if (g.seg.hdr)
			seg_add(&g.seg.hdr->totals.migrations, 1);
		return NULL;
	}
reset:;
	/* reset: close it, and let the program reconnect where the policy says */
	const char *why = refuse("08006", "pqshim: the connection to the %s was closed: read-only is now %s "
	                         "(on_switch = %s%s%s, policy %s); reconnect", from,
	                         __atomic_load_n(&g.read_only, __ATOMIC_RELAXED) ? "on" : "off",
	                         g.pol.on_switch == SWITCH_RESET ? "reset" : "migrate, but this "
	                         "connection cannot be moved",
	                         g.pol.on_switch == SWITCH_RESET ? "" : ": ",
	                         g.pol.on_switch == SWITCH_RESET ? "" : cannot, g.policy_path);
	t.depth++;
	PGconn *bad = pqerr_bad_conn(why);
	t.depth--;
	if (bad) {
		pqint_swap(c->pg, bad);
		t.depth++;
		real.PQfinish(bad);
		t.depth--;
		c->rec->status = CST_BAD;
		c->rec->cstate = CS_IDLE;
		c->reroute = 1;
	}
	c->ro_gen = gen;
	return why;
}

/*
 * PQreset/PQresetStart on a connection whose place the policy changed:
 * reconnect there instead of where it was.  0: not ours to handle (libpq
 * resets as usual); 1: done (the connection may still have failed, as a
 * reset can).
 */
int switch_reset(PGconn *pg, int async)
{
	shim_enter();
	struct conn *c = conn_lookup(pg);
	if (!c || !c->routed || !route_enabled())
		return 0;
	struct connargs scratch = { 0 };
	int redirect, now = route_plan(&c->args, &scratch, &redirect);
	connargs_free(&scratch);
	if (!c->reroute && (uint32_t)now == c->rec->target)
		return 0;
	if (!c->reroute && !pqint_can_swap(pg))
		return 0;
	char err[512];
	int target;
	struct connargs where = { 0 };
	PGconn *fresh = open_routed(c, async, &target, &where, err, sizeof err);
	if (!fresh) {
		pqerr_set_message(pg, err);
		return 1;
	}
	if (!async && !pqint_can_swap(fresh)) {
		/* GSS (or TLS not as pqerr.c knows it): cannot change hands;
		 * the program keeps its own connection, and libpq resets it in
		 * place */
		t.depth++;
		real.PQfinish(fresh);
		t.depth--;
		connargs_free(&where);
		return 0;
	}
	if (!async && session_carry(c, pg, fresh, 0, err, sizeof err) != 0)
		shim_log(LOG_WARNING, "after a reset: %s", err);
	take_over(c, fresh, target, &where);
	c->reroute = 0;
	c->ro_gen = __atomic_load_n(&g.ro_gen, __ATOMIC_ACQUIRE);
	return 1;
}
