/*
 * got.h - bring back objects that bind libpq past the shim.
 *
 * A module loaded with RTLD_DEEPBIND (PHP's pgsql.so and pdo_pgsql.so)
 * looks its symbols up in its own dependencies first, so its calls to
 * PQexec & co. bind to libpq itself and never reach the preloaded
 * wrappers.  got_scan() walks the loaded objects and points each such
 * reference (a JUMP_SLOT or GLOB_DAT relocation naming a function the shim
 * wraps, resolved into libpq or still lazy) at the shim's wrapper; an object
 * bound to a libpq of its own that the shim cannot bring back is an escape:
 * logged once and counted in the segment (totals.escaped).
 */
#ifndef PQSHIM_GOT_H
#define PQSHIM_GOT_H

#include <dlfcn.h>

/* Walk the objects loaded since the last walk (all of them after a
 * dlclose), patch what binds libpq directly, report escapes.  Thread-safe;
 * must not be called from inside a dl_iterate_phdr callback. */
void got_scan(void);

/* glibc's dlopen, for the shim's own use. */
void *got_real_dlopen(const char *file, int mode);

/* For wrap_dlopen.c: glibc's dlmopen f (or, NULL, its dlopen) and then,
 * for a load into the base namespace, got_scan(). */
void *got_dlopen(void *(*f)(Lmid_t, const char *, int), Lmid_t lmid, const char *file,
                 int mode);

#endif
