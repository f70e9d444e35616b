/*
 * share.c - a host's fair share of the cluster's slots (see share.h).
 */
#include "share.h"

uint32_t share_of(const struct share_host *h, int n, int me, uint32_t max,
                  uint64_t now_ms, uint32_t rotate_ms)
{
	int in[SHARE_MAX_HOSTS];
	int left = 0;
	if (n > SHARE_MAX_HOSTS || me < 0 || me >= n)
		return 0;
	/* Contenders: hosts that hold slots or want some (and ourselves). */
	for (int i = 0; i < n; i++)
		if ((in[i] = h[i].slots > 0 || h[i].wants || i == me))
			left++;
	uint32_t remaining = max;
	for (int changed = 1; changed && left > 0;) {
		changed = 0;
		uint32_t even = remaining / (uint32_t)left;
		for (int i = 0; i < n; i++) {
			if (!in[i] || h[i].wants || h[i].slots > even)
				continue;
			if (i == me)
				return h[i].slots;   /* satisfied with what it holds */
			remaining -= h[i].slots;
			in[i] = 0;
			left--;
			changed = 1;
		}
	}
	uint32_t base = remaining / (uint32_t)left, extra = remaining % (uint32_t)left;
	int rank = 0;
	for (int i = 0; i < me; i++)
		rank += in[i];
	uint32_t turn = (uint32_t)((now_ms / (rotate_ms ? rotate_ms : 1)) % (uint64_t)left);
	return base + (((uint32_t)rank + (uint32_t)left - turn) % (uint32_t)left < extra);
}
