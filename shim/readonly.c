/*
 * readonly.c - read-only as the policy and its flag file say (see
 * readonly.h).  Survives fork() as it is: the child's policy is its
 * parent's.
 */
#include "readonly.h"
#include "shim.h"
#include "log.h"

#include <sys/stat.h>
#include <time.h>

static int read_only;        /* in force now (atomic) */
static unsigned ro_gen;      /* bumped at every switch (atomic) */
static int quiet;            /* the drainer's: "read-only on" lines are the programs' */

void readonly_quiet(void)
{
	quiet = 1;
}

int readonly_on(void)
{
	return __atomic_load_n(&read_only, __ATOMIC_ACQUIRE);
}

unsigned readonly_gen(void)
{
	return __atomic_load_n(&ro_gen, __ATOMIC_ACQUIRE);
}

void readonly_update(void)
{
	int ro = g.pol.ro_enabled;
	if (g.pol.flag_file[0]) {
		struct stat st;
		if (stat(g.pol.flag_file, &st) == 0)
			ro = 1;
	}
	if (ro == __atomic_load_n(&read_only, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&read_only, ro, __ATOMIC_RELEASE);
	__atomic_fetch_add(&ro_gen, 1, __ATOMIC_RELEASE);
	/* every thread's fast connection must look again (work_begin) */
	map_epoch_bump();
	shim_log(LOG_INFO, "%s %s (%s)", quiet ? "the drainer sees a switch: read-only now" : "read-only",
	         ro ? "on" : "off", g.pol.ro_enabled ? "[read_only] enabled" : g.pol.flag_file);
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
