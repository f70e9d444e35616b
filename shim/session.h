/*
 * session.h - what moves with a connection besides its socket (session.c):
 * the session settings the program changed, the statements it prepared by
 * name, and the cancel objects it took.
 */
#ifndef PQSHIM_SESSION_H
#define PQSHIM_SESSION_H

#include "shim.h"

/* A statement prepared by name (PQprepare/PQsendPrepare succeeded). */
void session_note_prepare(struct conn *c, const char *name, const char *query,
                          int nparams, const Oid *types);

/* The program took (PQgetCancel) or freed (PQfreeCancel) a cancel object. */
void session_note_cancel(struct conn *c, PGcancel *cancel);
void session_forget_cancel(PGcancel *cancel);

/* PQfinish: free what c carries. */
void session_forget(struct conn *c);

/* Give `to` what `from` had (settings with sets = 1, prepared statements).
 * 0, or -1 and err when the new side refuses. */
int session_carry(struct conn *c, PGconn *from, PGconn *to, int sets, char *err, size_t size);

/* c now talks to another backend: so do its cancel objects. */
void session_follow_cancels(struct conn *c);

#endif
