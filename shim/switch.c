/*
 * switch.c - moving live connections when read-only starts or ends.
 *
 * A connection notices a switch at its next statement (work_begin compares
 * its generation with readonly_gen()).  If it is inside a transaction it waits
 * for the transaction to end.  Otherwise, when the route the policy gives
 * it now differs from where it is:
 *  - migrate: a fresh connection is opened where the policy says, the
 *    session settings the program changed (DateStyle, TimeZone, ...) and
 *    the statements it prepared by name are carried over, and the contents
 *    of the two PGconn structures are exchanged (pqint.c): the program's
 *    PGconn * stays valid and now talks to the new server; the old
 *    connection is closed (TLS included: pqint.c points OpenSSL's objects
 *    at their new home).  Connections that cannot be moved that way (GSS
 *    encryption, event procedures) are reset instead.
 *  - reset: the old connection is closed and replaced by a CONNECTION_BAD
 *    one saying why; the program's own reconnect (PQreset included, see
 *    switch_reset) lands where the policy says.
 */
#include "switch.h"
#include "log.h"
#include "pqerr.h"
#include "readonly.h"
#include "record.h"
#include "route.h"
#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *target_names[] = { "direct", "primary", "replica" };

/* Open where the policy says now.  NULL and err filled on failure; on
 * success *where holds the arguments used. */
static PGconn *open_routed(struct conn *c, int async, int *target, struct connargs *where,
                           char *err, size_t size)
{
	struct connargs routed = { 0 };
	int redirect = 0;
	*target = route_plan(&c->args, &routed, &redirect);
	PGconn *fresh = OWN(route_connect(redirect ? &routed : &c->args, async));
	connargs_copy(where, redirect ? &routed : &c->args);
	connargs_free(&routed);
	if (redirect)
		record_redirected();
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
		OWN(real.PQfinish(fresh));
		return NULL;
	}
	return fresh;
}

/* Give the program's PGconn the contents of fresh; close the old ones. */
static void take_over(struct conn *c, PGconn *fresh, int target, struct connargs *where)
{
	pqint_carry_hooks(c->pg, fresh);
	if (real.PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF)
		OWN(real.PQenterPipelineMode(fresh));   /* the program is in pipeline mode */
	pqint_swap(c->pg, fresh);
	OWN(real.PQfinish(fresh));   /* now the old connection */
	session_follow_cancels(c);
	pthread_mutex_lock(&g.lock); /* the ticker thread reads `where` (drain.c) */
	connargs_free(&c->where);
	c->where = *where;
	where->n = 0;
	c->rec->target = (uint32_t)target;
	record_describe(c);
	pthread_mutex_unlock(&g.lock);
}

static enum switch_verdict closed(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum switch_verdict closed(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return SWITCH_CLOSED;
}

enum switch_verdict switch_check(struct conn *c, char *buf, size_t size)
{
	unsigned gen = readonly_gen();
	if (!c->routed || !route_enabled()) {
		c->ro_gen = gen;
		return SWITCH_STAYS;
	}
	PGTransactionStatusType ts = real.PQtransactionStatus(c->pg);
	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE)
		return SWITCH_STAYS;         /* moves when its transaction is over */
	struct connargs scratch = { 0 };
	int redirect, now = route_plan(&c->args, &scratch, &redirect);
	connargs_free(&scratch);
	/* Where it should be, and alive (drain.c may have ended its
	 * backend while it sat idle: then it reconnects, even in place). */
	if ((uint32_t)now == c->rec->target && real.PQstatus(c->pg) == CONNECTION_OK
	    && c->rec->backend_pid) {
		c->ro_gen = gen;
		return SWITCH_STAYS;
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
			 * not as pqint.c knows them): its state cannot change
			 * hands; reset instead. */
			OWN(real.PQfinish(fresh));
			connargs_free(&where);
			goto reset;
		}
		if (!fresh)
			return closed(buf, size, "pqshim: could not move the connection from the %s to the "
			              "%s: %s (on_switch = migrate, policy %s)", from, to, err,
			              g.policy_path);
		if (session_carry(c, c->pg, fresh, 1, err, sizeof err) != 0) {
			/* it would fail again at every statement: reset instead */
			OWN(real.PQfinish(fresh));
			connargs_free(&where);
			cannot = err;
			goto reset;
		}
		take_over(c, fresh, target, &where);
		c->ro_gen = gen;
		record_migrated();
		return SWITCH_STAYS;
	}
reset:;
	/* reset: close it, and let the program reconnect where the policy says */
	closed(buf, size, "pqshim: the connection to the %s was closed: read-only is now %s "
	       "(on_switch = %s%s%s, policy %s); reconnect", from, readonly_on() ? "on" : "off",
	       g.pol.on_switch == SWITCH_RESET ? "reset" : "migrate, but this connection cannot "
	       "be moved", g.pol.on_switch == SWITCH_RESET ? "" : ": ",
	       g.pol.on_switch == SWITCH_RESET ? "" : cannot, g.policy_path);
	PGconn *bad = OWN(pqerr_bad_conn(buf));
	if (bad) {
		pqint_swap(c->pg, bad);
		OWN(real.PQfinish(bad));
		c->rec->status = CST_BAD;
		c->rec->cstate = CS_IDLE;
		c->reroute = 1;
	}
	c->ro_gen = gen;
	return SWITCH_CLOSED;
}

/*
 * PQreset/PQresetStart on a connection whose place the policy changed:
 * reconnect there instead of where it was.  0: not ours to handle (libpq
 * resets as usual); 1: done (the connection may still have failed, as a
 * reset can).
 */
int switch_reset(struct conn *c, int async)
{
	if (!c || !c->routed || !route_enabled())
		return 0;
	PGconn *pg = c->pg;
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
		/* GSS (or TLS not as pqint.c knows it): cannot change hands;
		 * the program keeps its own connection, and libpq resets it in
		 * place */
		OWN(real.PQfinish(fresh));
		connargs_free(&where);
		return 0;
	}
	if (!async && session_carry(c, pg, fresh, 0, err, sizeof err) != 0)
		shim_log(LOG_WARNING, "after a reset: %s", err);
	take_over(c, fresh, target, &where);
	c->reroute = 0;
	c->ro_gen = readonly_gen();
	return 1;
}
