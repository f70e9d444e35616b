/*
 * segwatch.c - the shim's use of its segment (see segwatch.h): the verdicts
 * of segment.c (seg_attach, seg_check, the SIGBUS guard) turned into what
 * on_error says.
 */
#include "segwatch.h"
#include "log.h"
#include "shim.h"
#include "slots.h"

#include <stdio.h>
#include <string.h>

/* Why the segment cannot be used and on_error = fail-closed: every connect
 * and statement is refused with it.  "" while all is well. */
static char unusable[SEG_ERROR_MAX];
static int closed;                   /* unusable[] is written (atomic) */
static int damage_pending;           /* set by the SIGBUS handler (atomic) */

/* The segment cannot be used: fail-closed refuses all work from now on;
 * fail-open says so and caps within this process. */
static void unusable_now(const char *why)
{
	if (g.pol.scope == SCOPE_PROCESS) {
		/* the cap is this process's anyway: only the records are lost */
		shim_log(LOG_WARNING, "%s; tracking in this process only (scope = process)", why);
		g.proc_idx = -1;
		g.proc = &g.proc_local;
		return;
	}
	if (g.pol.on_error == ONERROR_FAIL_OPEN) {
		shim_log(LOG_ERR, "%s; the cap holds within this process only (on_error = fail-open)",
		         why);
		g.proc_idx = -1;
		g.proc = &g.proc_local;
		slots_configure();
		return;
	}
	if (__atomic_load_n(&closed, __ATOMIC_ACQUIRE))
		return;                  /* the first reason stays */
	shim_log(LOG_ERR, "%s; refusing connections and statements (on_error = fail-closed)", why);
	snprintf(unusable, sizeof unusable, "%s", why);
	__atomic_store_n(&closed, 1, __ATOMIC_RELEASE);
	map_epoch_bump();            /* every statement takes the whole path again */
}

/* From the SIGBUS handler: only atomic stores. */
static void segment_damaged(void)
{
	__atomic_store_n(&damage_pending, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&hot.next_tick, 0, __ATOMIC_RELAXED);
	map_epoch_bump();
}

/* On every tick, and when the SIGBUS handler has fired: is the segment
 * still whole? */
void segwatch_check(void)
{
	char why[SEG_ERROR_MAX];
	static int warned_replaced;
	__atomic_store_n(&damage_pending, 0, __ATOMIC_RELAXED);
	if (g.disabled || __atomic_load_n(&closed, __ATOMIC_ACQUIRE) || !g.seg.hdr || g.proc_idx < 0)
		return;
	static int acted;
	switch (seg_check(&g.seg, why, sizeof why)) {
	case SEG_DAMAGED:
		if (!__atomic_exchange_n(&acted, 1, __ATOMIC_ACQ_REL))   /* once, whichever thread */
			unusable_now(why);
		break;
	case SEG_MISSING:
		if (!warned_replaced++)
			shim_log(LOG_WARNING, "%s", why);
		break;
	default:
		break;
	}
}

/* The refusal of a statement while the segment cannot be used. */
int segwatch_refusal(char *buf, size_t size)
{
	if (unlikely(__atomic_load_n(&damage_pending, __ATOMIC_ACQUIRE)))
		segwatch_check();
	if (likely(!__atomic_load_n(&closed, __ATOMIC_ACQUIRE)))
		return 0;
	snprintf(buf, size, "pqshim: statement refused: %s (on_error = fail-closed)", unusable);
	return 1;
}

void segwatch_attach(const char *name)
{
	char why[SEG_ERROR_MAX];
	struct seg_want want = { name, g.pol.group, g.pol.max_processes, g.pol.max_tracked, 1 };
	enum seg_verdict v = seg_attach(&g.seg, &want, why, sizeof why);
	if (v == SEG_OTHER_SIZE)
		shim_log(LOG_WARNING, "%s", why);
	else if (v != SEG_OK)
		unusable_now(why);
	if (g.seg.hdr)
		seg_guard(&g.seg, segment_damaged);
}

int segwatch_move(const char *name, const struct policy *p)
{
	char why[SEG_ERROR_MAX];
	struct segment fresh;
	struct seg_want want = { name, p->group, p->max_processes, p->max_tracked, 1 };
	enum seg_verdict v = seg_attach(&fresh, &want, why, sizeof why);
	if (v != SEG_OK && v != SEG_OTHER_SIZE) {
		shim_log(LOG_WARNING, "%s; staying on segment %s", why, g.seg.hdr ? g.seg.name : "none");
		return -1;
	}
	if (g.seg.hdr)
		seg_detach(&g.seg);
	g.seg = fresh;
	seg_guard(&g.seg, segment_damaged);
	return 0;
}

void segwatch_table_full(void)
{
	char why[SEG_ERROR_MAX];
	seg_full_message(&g.seg, 1, why, sizeof why);
	unusable_now(why);
}

int segwatch_connect_refusal(char *buf, size_t size)
{
	if (likely(!__atomic_load_n(&closed, __ATOMIC_ACQUIRE)))
		return 0;
	snprintf(buf, size, "pqshim: connection refused: %s (on_error = fail-closed)", unusable);
	return 1;
}
