/*
 * wrap_dlsym.h - the shim's wrappers by name (wrap_dlsym.c owns the table):
 * dlsym's answers on libpq's handle, and got.c's patching of modules loaded
 * with RTLD_DEEPBIND.
 */
#ifndef PQSHIM_WRAP_DLSYM_H
#define PQSHIM_WRAP_DLSYM_H

/* The shim's wrapper for a libpq function name, or NULL. */
void *wrap_dlsym_wrapper(const char *name);

#endif
