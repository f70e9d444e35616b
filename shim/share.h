/*
 * share.h - scope = cluster: a host's fair share of the cluster's slots,
 * from a census of every host's leader (what each holds on the
 * coordinator, whether it announces unmet demand).  Pure arithmetic, the
 * same on every host, so that the hosts agree without talking.
 *
 * Water-filling: a host that wants nothing more needs what it holds; needs
 * at or below the even split are met; what is left is split evenly among
 * the other hosts, and the remainder (max mod hosts) goes round, one turn
 * every rotate_ms of a clock the hosts share (the coordinator's), hosts in
 * census order.  Invariant: the shares of the hosts of one census add up
 * to at most max.
 */
#ifndef PQSHIM_SHARE_H
#define PQSHIM_SHARE_H

#include <stdint.h>

#define SHARE_MAX_HOSTS 64

struct share_host {
	uint32_t slots;          /* slot locks it holds */
	int wants;               /* it announces unmet demand */
};

/* The share of host `me` (0 <= me < n <= SHARE_MAX_HOSTS). */
uint32_t share_of(const struct share_host *h, int n, int me, uint32_t max,
                  uint64_t now_ms, uint32_t rotate_ms);

#endif
