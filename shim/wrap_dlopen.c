/*
 * wrap_dlopen.c - after every dlopen, bring back what binds libpq directly.
 *
 * PHP loads pgsql.so and pdo_pgsql.so with RTLD_DEEPBIND: their references
 * bind to libpq before the preloaded wrappers.  This dlopen calls glibc's,
 * then has got.c walk the objects that load brought in.
 *
 * glibc searches a bare name in the *calling* object's DT_RPATH/DT_RUNPATH
 * and expands $ORIGIN in a path as the caller's directory, and the caller is
 * now the shim: so $ORIGIN is expanded here, and for a bare name from a
 * caller that has search paths, the search the caller would have made is
 * made here first (objects already loaded by that name, then its RPATH, or
 * LD_LIBRARY_PATH and its RUNPATH, with $ORIGIN), and glibc gets the path.
 */
#include "got.h"
#include "shim.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* dir/file exists in one of the ':'-separated dirs ($ORIGIN = origin). */
static int search_dirs(const char *dirs, const char *origin, const char *file,
                       char *out, size_t size)
{
	while (dirs && *dirs) {
		const char *end = strchr(dirs, ':');
		size_t len = end ? (size_t)(end - dirs) : strlen(dirs);
		char dir[PATH_MAX];
		if (len >= 7 && strncmp(dirs, "$ORIGIN", 7) == 0)
			snprintf(dir, sizeof dir, "%s%.*s", origin, (int)(len - 7), dirs + 7);
		else if (len >= 9 && strncmp(dirs, "${ORIGIN}", 9) == 0)
			snprintf(dir, sizeof dir, "%s%.*s", origin, (int)(len - 9), dirs + 9);
		else
			snprintf(dir, sizeof dir, "%.*s", (int)len, dirs);
		if (dir[0] && (size_t)snprintf(out, size, "%s/%s", dir, file) < size
		    && access(out, F_OK) == 0)
			return 1;
		dirs = end ? end + 1 : NULL;
	}
	return 0;
}

static struct link_map *caller_map(const void *caller)
{
	Dl_info info;
	struct link_map *lm = NULL;
	if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP))
		return NULL;
	return lm;
}

/* $ORIGIN of that object: the directory it was loaded from. */
static void origin_of(const struct link_map *lm, char *origin, size_t size)
{
	char exe[PATH_MAX];
	const char *me = lm->l_name;
	if (!me || !me[0]) {            /* the program itself */
		ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		exe[n > 0 ? n : 0] = '\0';
		me = exe;
	}
	snprintf(origin, size, "%s", me);
	char *slash = strrchr(origin, '/');
	if (slash)
		*slash = '\0';
}

/* file with $ORIGIN / ${ORIGIN} replaced by the caller's: 1 and out. */
static int expand_origin(const void *caller, const char *file, char *out, size_t size)
{
	struct link_map *lm = caller_map(caller);
	if (!lm)
		return 0;
	char origin[PATH_MAX];
	origin_of(lm, origin, sizeof origin);
	size_t used = 0;
	while (*file && used + 1 < size) {
		size_t skip = strncmp(file, "$ORIGIN", 7) == 0 ? 7
		            : strncmp(file, "${ORIGIN}", 9) == 0 ? 9 : 0;
		if (skip) {
			used += (size_t)snprintf(out + used, size - used, "%s", origin);
			file += skip;
		} else {
			out[used++] = *file++;
		}
	}
	if (used >= size || *file)
		return 0;
	out[used] = '\0';
	return 1;
}

/* The caller's path search for a bare name: 1 and out, or 0 (glibc's own
 * search, the same without the caller's paths, will do). */
static int caller_search(const void *caller, const char *file, char *out, size_t size)
{
	struct link_map *lm = caller_map(caller);
	if (!lm || !lm->l_ld)
		return 0;
	const char *strtab = NULL, *rpath = NULL, *runpath = NULL;
	ElfW(Addr) rp = 0, rup = 0;
	int has_rp = 0, has_rup = 0;
	for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; d++) {
		if (d->d_tag == DT_STRTAB)
			strtab = (const char *)(d->d_un.d_ptr < lm->l_addr ? lm->l_addr + d->d_un.d_ptr
			                                                   : d->d_un.d_ptr);
		else if (d->d_tag == DT_RPATH)
			rp = d->d_un.d_val, has_rp = 1;
		else if (d->d_tag == DT_RUNPATH)
			rup = d->d_un.d_val, has_rup = 1;
	}
	if (!strtab || (!has_rp && !has_rup))
		return 0;
	rpath = has_rp ? strtab + rp : NULL;
	runpath = has_rup ? strtab + rup : NULL;
	/* already loaded under that name: glibc finds it without a search */
	void *h = got_real_dlopen(file, RTLD_LAZY | RTLD_NOLOAD);
	if (h) {
		dlclose(h);
		return 0;
	}
	char origin[PATH_MAX];
	origin_of(lm, origin, sizeof origin);
	if (!runpath)
		return search_dirs(rpath, origin, file, out, size);
	char *ldpath = getenv("LD_LIBRARY_PATH");
	if (ldpath && search_dirs(ldpath, origin, file, out, size))
		return 0;               /* glibc finds it there first */
	return search_dirs(runpath, origin, file, out, size);
}

/* The name glibc would have resolved for the caller: $ORIGIN expanded as
 * the caller's, a bare name searched in the caller's paths; else as is. */
static const char *as_caller(const void *caller, const char *file, char *path, size_t size)
{
	if (!file)
		return file;
	if (strstr(file, "ORIGIN") && strchr(file, '$'))
		return expand_origin(caller, file, path, size) ? path : file;
	if (!strchr(file, '/') && caller_search(caller, file, path, size))
		return path;
	return file;
}

SHIM_EXPORT void *dlopen(const char *file, int mode)
{
	if (mode & RTLD_NOLOAD)
		return got_real_dlopen(file, mode);   /* loads nothing */
	char path[PATH_MAX];
	file = as_caller(__builtin_return_address(0), file, path, sizeof path);
	return got_dlopen(NULL, LM_ID_BASE, file, mode);
}

/* Objects loaded into another namespace have a libpq of their own there,
 * which the wrappers (bound to this namespace's) must not be given: only a
 * load into the base namespace is walked. */
SHIM_EXPORT void *dlmopen(Lmid_t lmid, const char *file, int mode)
{
	static void *(*real_dlmopen)(Lmid_t, const char *, int);
	void *(*f)(Lmid_t, const char *, int) = __atomic_load_n(&real_dlmopen, __ATOMIC_ACQUIRE);
	if (!f) {
		f = (void *(*)(Lmid_t, const char *, int))dlvsym(RTLD_NEXT, "dlmopen", "GLIBC_2.34");
		if (!f)
			f = (void *(*)(Lmid_t, const char *, int))dlvsym(RTLD_NEXT, "dlmopen", "GLIBC_2.3.4");
		if (!f)
			return NULL;
		__atomic_store_n(&real_dlmopen, f, __ATOMIC_RELEASE);
	}
	char path[PATH_MAX];
	if (lmid == LM_ID_BASE && !(mode & RTLD_NOLOAD))
		file = as_caller(__builtin_return_address(0), file, path, sizeof path);
	return got_dlopen(f, lmid, file, mode);
}
