/*
 * slots.h - the shim's use of the cap (slots.c): when a connection takes
 * and gives back a slot, what a wait that fails says, and what a thread
 * that already holds a slot does (nested).  The uncontended paths are
 * inline in shim.h (work_fast, settle_state).
 */
#ifndef PQSHIM_SLOTS_H
#define PQSHIM_SLOTS_H

#include "shim.h"

/* Point hot.cap at the semaphores the policy's scope uses, and set the
 * caps (start-up and every reload). */
void slots_configure(void);

/* The policy was read while it was changing (start-up, reload.c): until
 * a settled reload, slots_configure leaves the shared caps to the
 * processes already on the segment.  on = 0 once it settled. */
void slots_caps_wait(int on);
int slots_caps_waiting(void);

/* What a wait for a slot came to.  The caller acts on it: counts a
 * refusal (record_refused), defers the send, or tells the program. */
enum slot_wait {
	WAIT_GRANTED = 0,        /* held, or shared with the thread's own (nested = share) */
	WAIT_DEFER,              /* an event loop's send: let it wait its turn (defer.c) */
	WAIT_REFUSED,            /* timed out, nested = fail, or the queue is full: buf says */
};

/* Wait for an active slot for c.  may_defer: an event loop's send may be
 * told to wait its turn instead of blocking its thread. */
enum slot_wait slot_wait_active(struct conn *c, int may_defer, char *buf, size_t size);

/* The same without deferring, for what is left of a wait that began
 * earlier (a deferred send: its wait_timeout counts from its send). */
enum slot_wait slot_wait_active_for(struct conn *c, uint64_t timeout_ns, char *buf, size_t size);

/* An active slot for c now if there is room (no wait): 1 if held. */
int slot_try_active(struct conn *c);

/* Take a connection slot for c (NULL: no record could be made) before its
 * connect, waiting if need be. */
enum slot_wait slot_connect(struct conn *c, char *buf, size_t size);

/* A deferred send waited its whole wait_timeout (defer.c): count the
 * timeout, and the message for the program in buf. */
void slots_timed_out(struct conn *c, char *buf, size_t size, uint64_t waited_ns);

/* The wait_timeout of c's active slot, in ms: its lane's while the policy
 * has lanes, else the policy's. */
uint64_t slots_wait_timeout_ms(struct conn *c);

/* Has the calling thread results still to read on a connection other than
 * `except`?  Then its event loop will run again without anything from us. */
int slot_thread_pending(struct conn *except);

/* Does an exclusive lane wait (or run) while the calling thread holds a
 * slot or a transaction on a connection other than `except`?  Then a
 * deferred send of its event loop must not ride on that slot at a kick
 * (defer.c): the loop's connections would hand it on for ever, and the
 * exclusive one waits for the count to reach 0. */
int slot_excl_held_back(struct conn *except);

/* Finish what settle_state (shim.h) left: SETTLE_RELEASE and SETTLE_HAND. */
void slots_settle(struct conn *c, unsigned todo);

/* The fast settle parked c's plain slot (HELD -> PARKED, cap.h "Parked
 * slots") and the word showed more than nothing: SEM_SWEPT cleared if
 * the slot may stay parked (a shared cap of scope = host, a max, room,
 * nobody waiting, no flag), else the slot given back the normal way. */
void slots_park_slow(struct conn *c);

/* c is about to work (the whole path): a parked slot is its own again, 1;
 * else 0, its hold NONE (a sweep took the slot: wait for one anew) or what
 * it was (nothing parked). */
int slots_unpark(struct conn *c);

/* Give back the active slot c holds, if it does (a connection that a
 * switch closed, or that libpq says is lost). */
void slots_release_active(struct conn *c);

/* PQfinish of c inside a transaction (g.lock held, before libpq's close):
 * 1 if its slots and record stay until the server has ended the session
 * (then the caller neither releases them nor the record); slots_closed,
 * after libpq's PQfinish on the same thread, waits for that (bounded) and
 * gives them back.  slots_closed does nothing otherwise. */
int slots_close_later(struct conn *c);
void slots_closed(void);

/* Give back every slot c holds (PQfinish, a failed connect, exit). */
void slots_release_all(struct conn *c);

/* PQfinish of a connection whose slot another of its thread's rides on:
 * hand it over before the rest goes back (g.lock held). */
void slots_hand_over_locked(struct conn *c);

/* A thread exits: the active slots it took come back, except those of
 * transactions it leaves open (orphans: their slot stays held until the
 * connection is used again, closed, or lost). */
void slots_thread_exit(pid_t tid);

/* Every connection holding an active slot whose server has ended its
 * session gives the slot back, whichever thread uses it (read in place,
 * no call into libpq): orphans too.  The tick, and waiters between
 * slices. */
void slots_check_lost(void);

/* What else a waiter does between its slices (every 200 ms): the
 * lifecycle's tick when one is due (reload.c registers it), so that a
 * raised cap or a switch reaches a process whose threads all wait or sit
 * idle.  Given from above, never included from here (layers). */
void slots_on_slice(void (*look)(void));

/* Another thread uses an orphan: its transaction, and slot, are this
 * thread's now. */
void slots_adopt_orphan(struct conn *c);

/* A fork child: a private cap's counts and waiters are the parent's. */
void slots_after_fork(void);

/* At exit: count the shared cap's holders again without this process. */
void slots_at_exit(void);

#endif
