/*
 * coord.h - the shim's own connection to the coordinator (scope = cluster):
 * the advisory locks that are the cluster's slots, the demand a host
 * announces, the census of every host's locks.  Used only by the leader's
 * coordination thread (lease.c), one connection per process at most.
 *
 * The connection is the shim's, never the program's: it is made with the
 * real libpq functions from a thread whose every libpq call passes the
 * wrappers untouched (t.depth), so it is never counted, capped, tracked or
 * redirected.  TCP keepalives are set on both ends (for a TCP coordinator):
 * the host notices a coordinator it cannot reach within its keepalive bound
 * (libpq's keepalives and tcp_user_timeout, unless the policy's conninfo
 * sets its own) and stops using its lease; the server ends the session of
 * a host it cannot reach within its own, longer bound (the session's
 * tcp_keepalives_* and tcp_user_timeout, derived from the host's below),
 * so that a lease is given up by its host before the server hands it to
 * another.  A process that
 * dies on a host that lives closes its socket: the server knows at once.
 */
#ifndef PQSHIM_COORD_H
#define PQSHIM_COORD_H

#include <stddef.h>
#include <stdint.h>

/* The host's side (libpq's keepalives, unless the policy's conninfo sets
 * them): it notices a coordinator it cannot reach within idle + interval x
 * count s (2 + 1 x 3 = 5 s), or tcp_user_timeout while data is unanswered. */
#define COORD_KEEPALIVES_IDLE      2
#define COORD_KEEPALIVES_INTERVAL  1
#define COORD_KEEPALIVES_COUNT     3
#define COORD_TCP_USER_TIMEOUT     5000   /* ms */
/* The server's side of the same session, from the host's values (the
 * session SETs them): it ends a session it cannot reach within
 * (2 idle + 1) + 2 interval x count s (5 + 2 x 3 = 11 s by default),
 * later than the host gives up; tcp_user_timeout twice the host's. */
#define COORD_SERVER_IDLE(idle)          (2 * (idle) + 1)
#define COORD_SERVER_INTERVAL(interval)  (2 * (interval))
#define COORD_SERVER_USER_TIMEOUT(ms)    (2 * (ms))

/* A standby's application_name begins so (never counted as a host). */
#define COORD_STANDBY_PREFIX "pqshim-standby "
#define COORD_MAX_HOSTS 64      /* = SHARE_MAX_HOSTS: the census keeps the first 64 */

#define COORD_GROUPS 17         /* = CAP_LANES: the cluster's slots (0), lane l's (l) */

/* One session in the census: a host's leader. */
struct coord_host {
	int pid;                 /* its backend on the coordinator */
	uint32_t slots[COORD_GROUPS];  /* slot locks it holds: the cluster's, each lane's */
	uint32_t wants;          /* bit g: holds group g's WANT lock */
	int xwant;               /* holds XWANT: its exclusive lane waits */
	char appname[64];        /* "pqshim <classid> <host> a=<active> w=<waiting>" */
};

/* Connect (blocking, connect_timeout 3 s).  0, or -1 with err filled. */
int coord_connect(const char *conninfo, const char *appname, uint32_t classid,
                  char *err, size_t size);
int coord_connected(void);
/* The session, for display: host port dbname user (never a password). */
void coord_describe(const char *conninfo, char *buf, size_t size);
int coord_backend_pid(void);
/* End the session (Terminate) / forget it in a fork child (close the
 * socket only: the parent's session goes on). */
void coord_close(void);
void coord_forget(void);

/* Wait up to ms for the coordinator to say something.  1: another host
 * notified (a slot came free, a host wants), 0: nothing, -1: lost. */
int coord_wait(int ms);

/* Try to lock up to n free slots of base..base+max-1 that `held` (nheld
 * keys) does not list; the keys got are appended to held.  Returns how
 * many, -1 lost. */
int coord_lock_slots(uint32_t base, uint32_t max, uint32_t *held, uint32_t *nheld, uint32_t n);
/* Unlock the last n keys of held and tell the others.  0, or -1 lost. */
int coord_unlock_slots(uint32_t *held, uint32_t *nheld, uint32_t n);
/* Announce (on = 1) or withdraw unmet demand: hold the key (a WANT key,
 * XWANT) shared, and notify.  0, or -1 lost. */
int coord_want(uint32_t key, int on);
/* Every host's locks in this class, and the coordinator's clock (ms; left
 * alone when no host holds anything).  Number of hosts, or -1 lost. */
int coord_census(struct coord_host *hosts, int max, uint64_t *server_ms);

/* The gate (lease_seg.h).  Take G and S shared (have_s: S is held
 * already, G alone), both or neither, unless a session holds XWANT: 1
 * held, 0 not, -1 lost. */
int coord_gate_share(int have_s);
/* Try key (excl: exclusive; else shared), only while session `pid` holds
 * `if_key` in that mode too (pid 0: no condition): 1 got, 0 not, -1 lost. */
int coord_try_key(uint32_t key, int excl, int pid, uint32_t if_key, int if_excl);
/* Unlock key (in that mode) and tell the others.  0, or -1 lost. */
int coord_unlock_key(uint32_t key, int excl);
/* The standby (lease_seg.h): hold, shared, every slot key of keys (the
 * leader's) that the leader's session `leader_pid` holds now, and let go
 * of those it holds that keys does not list (with a NOTIFY when any came
 * free).  0; 1 when it could not be done (no memory, the statement
 * failed) on a connection still up: try again later; -1 lost. */
int coord_mirror(const uint32_t *keys, uint32_t nkeys, int leader_pid);
/* Lock, shared, the slot keys session `pid` holds (a leader taking over
 * its standby's), into held (room keys in all).  How many, or -1 lost. */
int coord_adopt(int pid, uint32_t *held, uint32_t *nheld, uint32_t room);
/* The slot keys this session holds, into held (a promoted standby).  How
 * many, or -1 lost. */
int coord_own_slots(uint32_t *held, uint32_t *nheld, uint32_t room);

/* Say what this host does, in the session's application_name. */
int coord_publish(const char *appname);

/* Statements sent so far (each is one transaction on the coordinator). */
uint64_t coord_statements(void);

#endif
