/*
 * real.c - find libpq's own functions (see real.h).
 *
 * Order of search: an already loaded "libpq.so.5" (RTLD_NOLOAD: whatever
 * scope it was loaded into, global or a Python extension's private one),
 * then any loaded object whose file name starts with "libpq" (wheels that
 * bundle a renamed copy), then RTLD_NEXT.  The shim never loads libpq itself:
 * a program that never touches libpq pays nothing for being preloaded.
 */
#include "real.h"
#include "log.h"

#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct real_libpq real;
void *(*real_dlsym)(void *handle, const char *name);

void real_dlsym_init(void)
{
	if (real_dlsym)
		return;
	/* dlvsym is not interposed; ask for the newest dlsym first. */
	void *f = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (!f)
		f = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	__atomic_store_n(&real_dlsym, (void *(*)(void *, const char *))f, __ATOMIC_RELEASE);
}

/* Copy out the name only: dlopen() inside the callback would take the
 * loader's locks in the opposite order to a concurrent dlopen. */
static int find_libpq_by_scan(struct dl_phdr_info *info, size_t size, void *out)
{
	(void)size;
	const char *slash = strrchr(info->dlpi_name, '/');
	const char *base = slash ? slash + 1 : info->dlpi_name;
	if (strncmp(base, "libpq.so", 8) != 0 && strncmp(base, "libpq-", 6) != 0)
		return 0;
	snprintf(out, PATH_MAX, "%s", info->dlpi_name);
	return 1;
}

static void *libpq_handle(void)
{
	void *h = dlopen("libpq.so.5", RTLD_LAZY | RTLD_NOLOAD);
	if (!h) {
		char name[PATH_MAX] = "";
		dl_iterate_phdr(find_libpq_by_scan, name);
		if (name[0])
			h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
	}
	return h;
}

static int resolve_status = -1;
static void *libpq;              /* its handle, once resolved */

void *real_libpq_dep(const char *name)
{
	return libpq ? real_dlsym(libpq, name) : NULL;
}

static void resolve_once(void)
{
	real_dlsym_init();
	void *h = libpq = libpq_handle();
	int missing = 0;

	/* With a handle, dlsym searches libpq itself, never the shim. */
#define REAL_FIND(name, ret, params) \
	real.name = (ret (*) params)(h ? real_dlsym(h, #name) : NULL); \
	if (!real.name) real.name = (ret (*) params)real_dlsym(RTLD_NEXT, #name); \
	if (!real.name) missing++;
	REAL_WRAPPED(REAL_FIND)
	REAL_CALLED(REAL_FIND)
#undef REAL_FIND
	if (missing)
		shim_log(LOG_ERR, "%d libpq functions not found; is libpq loaded?", missing);
	resolve_status = missing ? -1 : 0;
}

int real_resolve(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, resolve_once);
	return resolve_status;
}
