/*
 * wrap_dlsym.c - answer look-ups of libpq's functions on libpq's own handle.
 *
 * ctypes (psycopg 3's Python implementation) does dlopen("libpq.so.5") and
 * dlsym(handle, "PQexec"): the answer is libpq's function, and symbol
 * interposition never sees those calls.  This dlsym returns the shim's
 * wrapper instead when the name is one the shim wraps and the real answer
 * is libpq's own function.  Everything else goes to glibc's dlsym as a tail
 * call, so that glibc still sees the original caller (RTLD_NEXT depends on
 * who asks); tests/integration checks that.
 */
#include "shim.h"
#include "wrap_dlsym.h"

#include <dlfcn.h>
#include <string.h>

/* The wrappers, by name (the other wrap_*.c define them). */
#define WRAP_DECLARE(name, ret, params) extern ret name params;
REAL_WRAPPED(WRAP_DECLARE)
#undef WRAP_DECLARE

struct wrapper { const char *name; void *fn; };

static const struct wrapper wrappers[] = {
#define WRAP_ENTRY(name, ret, params) { #name, (void *)name },
	REAL_WRAPPED(WRAP_ENTRY)
#undef WRAP_ENTRY
};

/* The shim's wrapper for a libpq name, or NULL.  30 entries: a linear
 * scan is as fast as anything and needs no sort. */
void *wrap_dlsym_wrapper(const char *name)
{
	for (size_t i = 0; i < sizeof(wrappers) / sizeof(wrappers[0]); i++)
		if (strcmp(wrappers[i].name, name) == 0)
			return wrappers[i].fn;
	return NULL;
}

static int wraps_name(const char *name)
{
	return name && name[0] == 'P' && name[1] == 'Q';
}

SHIM_EXPORT void *dlsym(void *handle, const char *name)
{
	if (unlikely(!real_dlsym))
		real_dlsym_init();
	if (likely(!wraps_name(name) || handle == RTLD_NEXT || handle == RTLD_DEFAULT))
		return real_dlsym(handle, name);     /* tail call */
	void *found = real_dlsym(handle, name);
	void *mine = found ? wrap_dlsym_wrapper(name) : NULL;
	if (!mine)
		return found;
	/* Only replace libpq's own function, not a same-named symbol of some
	 * other library looked up on its own handle. */
	if (real_resolve() == 0) {
#define MATCH(fn, ret, params) if (found == (void *)real.fn) return mine;
		REAL_WRAPPED(MATCH)
#undef MATCH
	}
	return found;
}
