/*
 * switch.h - moving a live connection when read-only starts or ends
 * (switch.c).
 */
#ifndef PQSHIM_SWITCH_H
#define PQSHIM_SWITCH_H

#include "shim.h"

enum switch_verdict {
	SWITCH_STAYS = 0,        /* where it should be, moved there, or waits for its transaction */
	SWITCH_CLOSED,           /* closed (on_switch = reset, or it could not move): buf says */
};

/* A switch happened since c last looked: follow it. */
enum switch_verdict switch_check(struct conn *c, char *buf, size_t size);

/* PQreset/PQresetStart of c: 1 when done here (reconnected where the
 * policy says), 0 when libpq should reset it as usual. */
int switch_reset(struct conn *c, int async);

#endif
