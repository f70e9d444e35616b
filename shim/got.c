/*
 * got.c - point libpq references that bypass the preload at the wrappers
 * (see got.h).
 *
 * A walk lists the loaded objects (dl_iterate_phdr), takes a reference on
 * each new one (dlopen RTLD_NOLOAD, so that a concurrent dlclose cannot
 * unmap it under us), and reads its dynamic section: every JUMP_SLOT or
 * GLOB_DAT relocation that names a function the shim wraps and that holds
 * libpq's own function (or still the lazy PLT stub, which would bind there)
 * gets the wrapper's address instead.  RELRO pages are made writable for
 * the one store and read-only again.  The shim's own object is never
 * touched; libpq's own references to its exports are pointed at the
 * wrappers too, which is where the loader sends them when libpq is not
 * loaded under RTLD_DEEPBIND (walk_object).
 *
 * Invariants: no pointer into an object survives a walk except the load
 * addresses of the objects walked, and those are forgotten as soon as the
 * loader reports an unload (dlpi_subs changed); a walk runs under scan_lock;
 * a thread that finds the lock taken waits for it only when it holds none
 * of the loader's locks (lock_scan), and otherwise leaves the walk to the
 * holder, which walks again before it lets go.
 */
#include "got.h"
#include "shim.h"
#include "startup.h"
#include "wrap_dlsym.h"
#include "log.h"

#include <dlfcn.h>
#include <elf.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#define R_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB R_AARCH64_GLOB_DAT
#endif

#define SEEN_MAX   1024          /* objects remembered as walked */
#define WALK_MAX   256           /* new objects taken per pass */
#define ARENA_SIZE (64 * 1024)   /* their names, copied */
#define ESCAPES_MAX 32           /* objects reported, per process */

static pthread_mutex_t scan_lock = PTHREAD_MUTEX_INITIALIZER;
static int scan_again;                     /* a walk was asked for meanwhile (atomic) */
static TLS int in_scan;
static TLS int in_dlopen;                  /* inside glibc's dlopen (constructors run there) */

static void *(*dlopen_fn)(const char *, int);

/* Under scan_lock. */
static uintptr_t seen[SEEN_MAX];
static int nseen;
static unsigned long long seen_subs, seen_adds;
static char reported[ESCAPES_MAX][PATH_MAX];
static int nreported;

struct object {
	uintptr_t addr;
	const ElfW(Phdr) *phdr;
	int phnum;
	const char *name;          /* in the arena */
};

struct walk {
	struct object obj[WALK_MAX];
	int n, more;
	size_t used;
	char arena[ARENA_SIZE];
	int libpq;                 /* a libpq is loaded */
	unsigned long long subs, adds;
};
static struct walk w;

static void resolve_dlopen(void)
{
	if (__atomic_load_n(&dlopen_fn, __ATOMIC_ACQUIRE))
		return;
	void *f = dlvsym(RTLD_NEXT, "dlopen", "GLIBC_2.34");
	if (!f)
		f = dlvsym(RTLD_NEXT, "dlopen", "GLIBC_2.2.5");
	__atomic_store_n(&dlopen_fn, (void *(*)(const char *, int))f, __ATOMIC_RELEASE);
}

void *got_real_dlopen(const char *file, int mode)
{
	resolve_dlopen();
	void *(*f)(const char *, int) = __atomic_load_n(&dlopen_fn, __ATOMIC_ACQUIRE);
	return f ? f(file, mode) : NULL;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* The same test as real.c's: libpq.so* or a renamed copy libpq-*. */
static int is_libpq_name(const char *path)
{
	const char *b = base_name(path);
	return strncmp(b, "libpq.so", 8) == 0 || strncmp(b, "libpq-", 6) == 0;
}

static int was_seen(uintptr_t addr)
{
	for (int i = 0; i < nseen; i++)
		if (seen[i] == addr)
			return 1;
	return 0;
}

/* Inside dl_iterate_phdr (the loader's lock is held): copy, call nothing. */
static int collect(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	w.subs = info->dlpi_subs;
	if (is_libpq_name(info->dlpi_name))
		w.libpq = 1;
	if (was_seen(info->dlpi_addr))
		return 0;
	size_t len = strlen(info->dlpi_name) + 1;
	if (w.n == WALK_MAX || w.used + len > sizeof w.arena) {
		w.more = 1;
		return 0;
	}
	struct object *o = &w.obj[w.n++];
	o->addr = info->dlpi_addr;
	o->phdr = info->dlpi_phdr;
	o->phnum = info->dlpi_phnum;
	o->name = memcpy(w.arena + w.used, info->dlpi_name, len);
	w.used += len;
	return 0;
}

static int find_libpq(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	w.subs = info->dlpi_subs;
	w.adds = info->dlpi_adds;
	if (is_libpq_name(info->dlpi_name))
		w.libpq = 1;
	return 0;
}

/* libpq's own function of that name, if the shim wraps it. */
static void *libpq_function(const char *name)
{
#define REAL_FOR(fn, ret, params) if (strcmp(name, #fn) == 0) return (void *)real.fn;
	REAL_WRAPPED(REAL_FOR)
#undef REAL_FOR
	return NULL;
}

static int in_object(const struct object *o, uintptr_t a)
{
	for (int i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *p = &o->phdr[i];
		if (p->p_type == PT_LOAD && a >= o->addr + p->p_vaddr
		    && a < o->addr + p->p_vaddr + p->p_memsz)
			return 1;
	}
	return 0;
}

/* The page range the loader made read-only after relocating (RELRO). */
static int in_relro(const struct object *o, uintptr_t a, uintptr_t page)
{
	for (int i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *p = &o->phdr[i];
		if (p->p_type != PT_GNU_RELRO)
			continue;
		uintptr_t start = (o->addr + p->p_vaddr) & ~(page - 1);
		uintptr_t end = (o->addr + p->p_vaddr + p->p_memsz) & ~(page - 1);
		return a >= start && a < end;
	}
	return 0;
}

static int write_slot(const struct object *o, void **slot, void *value)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)slot;
	if (!in_relro(o, a, page)) {
		__atomic_store_n(slot, value, __ATOMIC_RELEASE);
		return 0;
	}
	void *p = (void *)(a & ~(page - 1));
	if (mprotect(p, page, PROT_READ | PROT_WRITE) != 0)
		return -1;
	__atomic_store_n(slot, value, __ATOMIC_RELEASE);
	mprotect(p, page, PROT_READ);
	return 0;
}

static int already_reported(const char *object)
{
	for (int i = 0; i < nreported; i++)
		if (strcmp(reported[i], object) == 0)
			return 1;
	if (nreported < ESCAPES_MAX)
		snprintf(reported[nreported++], PATH_MAX, "%s", object);
	return 0;
}

/* Once per object and process: the log, and the segment's count. */
static void report_escape(const char *object, const char *how)
{
	if (already_reported(object))
		return;
	shim_ensure();           /* the policy's log, the segment */
	shim_log(LOG_WARNING, "%s calls its own libpq (%s): not covered", object, how);
	struct seg_header *h = g.seg.hdr;
	if (h) {
		__atomic_fetch_add(&h->totals.escaped, 1, __ATOMIC_RELAXED);
		/* read racily by the tool, shown to humans only */
		snprintf(h->escaped_object, sizeof h->escaped_object, "%s", object);
	}
}

/* Where a pointer leads: the object that holds it, by name. */
static const char *owner_of(const void *p)
{
	Dl_info info;
	if (dladdr(p, &info) && info.dli_fname && info.dli_fname[0])
		return info.dli_fname;
	return "an unnamed object";
}

struct dyn {
	const ElfW(Sym) *symtab;
	const char *strtab;
	const ElfW(Rela) *rela, *jmprel;
	size_t relasz, jmprelsz;
	int pltrel_rela;
};

/* The loader has already relocated these d_ptr values in place (glibc);
 * an object whose dynamic section is read-only keeps them relative. */
static const void *dyn_ptr(uintptr_t base, ElfW(Addr) p)
{
	return (const void *)(p < base ? base + p : p);
}

static int read_dynamic(const struct link_map *lm, struct dyn *d)
{
	memset(d, 0, sizeof *d);
	if (!lm->l_ld)
		return -1;
	for (const ElfW(Dyn) *e = lm->l_ld; e->d_tag != DT_NULL; e++) {
		switch (e->d_tag) {
		case DT_SYMTAB:   d->symtab = dyn_ptr(lm->l_addr, e->d_un.d_ptr); break;
		case DT_STRTAB:   d->strtab = dyn_ptr(lm->l_addr, e->d_un.d_ptr); break;
		case DT_RELA:     d->rela = dyn_ptr(lm->l_addr, e->d_un.d_ptr); break;
		case DT_RELASZ:   d->relasz = e->d_un.d_val; break;
		case DT_JMPREL:   d->jmprel = dyn_ptr(lm->l_addr, e->d_un.d_ptr); break;
		case DT_PLTRELSZ: d->jmprelsz = e->d_un.d_val; break;
		case DT_PLTREL:   d->pltrel_rela = e->d_un.d_val == DT_RELA; break;
		default: break;
		}
	}
	return d->symtab && d->strtab ? 0 : -1;
}

/* What one object's relocations found. */
struct verdict {
	int patched, failed;
	const char *provider;       /* a libpq other than ours it is bound to */
};

/* own: the object is a libpq of its own (it defines PQconnectdb): its
 * references stay with its own functions.  A wrapper would hand it a PGconn
 * of the other libpq, whose layout may differ. */
/* What a reference of that name should hold (the shim's function) and what
 * holding it instead means bypassing the shim: libpq's functions that the
 * shim wraps, and the loader's dlopen and dlsym (a module loaded with
 * RTLD_DEEPBIND binds those to libc, and what it loads or looks up itself
 * would escape the same way).  0 for any other name. */
static int targets(const char *name, void **mine, void **theirs)
{
	if (name[0] == 'P' && name[1] == 'Q') {
		*mine = wrap_dlsym_wrapper(name);
		*theirs = *mine ? libpq_function(name) : NULL;
	} else if (name[0] == 'd' && strcmp(name, "dlopen") == 0) {
		*mine = (void *)dlopen;
		*theirs = (void *)__atomic_load_n(&dlopen_fn, __ATOMIC_ACQUIRE);
	} else if (name[0] == 'd' && strcmp(name, "dlsym") == 0) {
		*mine = (void *)dlsym;
		*theirs = (void *)real_dlsym;
	} else {
		return 0;
	}
	return *theirs != NULL;
}

/* own: the object is a libpq of its own (it defines PQconnectdb): its
 * references stay with its own functions.  A wrapper would hand it a PGconn
 * of the other libpq, whose layout may differ. */
static void patch_table(const struct object *o, void *handle, const struct dyn *d,
                        const ElfW(Rela) *rel, size_t size, int own, struct verdict *v)
{
#ifdef R_SLOT
	for (size_t i = 0; rel && i < size / sizeof *rel; i++) {
		unsigned type = (unsigned)ELF64_R_TYPE(rel[i].r_info);
		size_t symi = ELF64_R_SYM(rel[i].r_info);
		if ((type != R_SLOT && type != R_GLOB) || symi == 0)
			continue;
		const char *name = d->strtab + d->symtab[symi].st_name;
		void *mine, *theirs;
		if (!targets(name, &mine, &theirs))
			continue;
		int pq = name[0] == 'P';
		void **slot = (void **)(o->addr + rel[i].r_offset);
		void *now = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
		int lazy = in_object(o, (uintptr_t)now);
		if (own) {
			void *def = pq ? real_dlsym(handle, name) : NULL;
			if (def && in_object(o, (uintptr_t)def) && now != def && (now == mine || lazy)
			    && write_slot(o, slot, def) != 0)
				v->failed++;
			continue;
		}
		if (now == mine)
			continue;
		/* Still lazy (the PLT stub, inside the object): where the
		 * resolver would bind it, in the object's own scope. */
		void *bound = lazy ? real_dlsym(handle, name) : now;
		if (bound == mine)
			continue;           /* the shim's, once bound */
		if (bound == theirs) {
			if (write_slot(o, slot, mine) == 0)
				v->patched++;
			else
				v->failed++;
		} else if (pq && bound && !in_object(o, (uintptr_t)bound) && !v->provider) {
			Dl_info info;
			/* only a definition of that very name counts as a libpq */
			if (dladdr(bound, &info) && info.dli_sname && strcmp(info.dli_sname, name) == 0)
				v->provider = owner_of(bound);
		}
	}
#else
	(void)o; (void)handle; (void)d; (void)rel; (void)size; (void)own; (void)v;
#endif
}

static void walk_object(const struct object *o, const void *self, const void *libpq)
{
	void *h = got_real_dlopen(o->name[0] ? o->name : NULL, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return;                 /* the vDSO, or gone already */
	struct link_map *lm = NULL;
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || !lm || lm->l_addr != o->addr
	    || (const void *)lm == self) {
		dlclose(h);             /* another namespace's, or the shim */
		return;
	}
	/* The libpq the shim wraps calls its own exports through its PLT
	 * (PQexec -> PQsendQuery, lo_* -> PQfn).  Loaded normally, those
	 * references already hold the wrappers (the preload comes first) and
	 * nothing changes; loaded as a dependency of an RTLD_DEEPBIND module
	 * (PHP's pgsql), they bind inside libpq and PHP's large objects would
	 * run uncapped: pointed at the wrappers, they behave as without
	 * DEEPBIND (the wrappers pass nested calls straight through). */
	int ours = (const void *)lm == libpq;
	/* A libpq of the object's own: linked into it (statically), or a
	 * renamed copy (a wheel's libpq-<hash>.so) that the program reaches
	 * through dlsym on its handle.  Either defines the connect function
	 * itself and calls it without asking the loader. */
	void *def = ours ? NULL : real_dlsym(h, "PQconnectdb");
	int own = def && in_object(o, (uintptr_t)def);
	struct dyn d;
	struct verdict v = { 0, 0, NULL };
	if (read_dynamic(lm, &d) == 0) {
		if (d.pltrel_rela)
			patch_table(o, h, &d, d.jmprel, d.jmprelsz, own, &v);
		patch_table(o, h, &d, d.rela, d.relasz, own, &v);
	}
	const char *name = o->name[0] ? o->name : "the program";
	if (ours)
		v.provider = NULL;      /* its own functions are the real ones */
	if (v.failed)
		shim_log(LOG_WARNING, "%s: %d libpq references could not be pointed at the shim (mprotect)",
		         name, v.failed);
	if (v.provider) {
		report_escape(name, v.provider);
		already_reported(v.provider);   /* its callers are the news, not it */
	} else if (own) {
		report_escape(name, is_libpq_name(name)
		             ? "a second libpq, loaded beside the one the shim wraps"
		             : "linked in: it defines PQconnectdb itself");
	}
	dlclose(h);
}

static const void *link_map_of(const void *addr)
{
	Dl_info info;
	void *lm = NULL;
	if (!addr || !dladdr1(addr, &info, &lm, RTLD_DL_LINKMAP))
		return NULL;
	return lm;
}

static void walk_once(void)
{
	w.libpq = 0;
	dl_iterate_phdr(find_libpq, NULL);
	if (!w.libpq || real_resolve() != 0)
		return;                 /* nothing can bind libpq yet */
	if (w.adds == seen_adds && w.subs == seen_subs && !w.more)
		return;                 /* nothing loaded or unloaded since */
	seen_adds = w.adds;
	resolve_dlopen();        /* for targets() */
	real_dlsym_init();
	const void *self = link_map_of((const void *)got_scan);
	const void *libpq = link_map_of((const void *)real.PQexec);
	do {
		if (w.subs != seen_subs) {   /* something was unloaded: forget */
			nseen = 0;
			seen_subs = w.subs;
		}
		w.n = 0;
		w.more = 0;
		w.used = 0;
		dl_iterate_phdr(collect, NULL);
		for (int i = 0; i < w.n; i++) {
			walk_object(&w.obj[i], self, libpq);
			if (nseen < SEEN_MAX)
				seen[nseen++] = w.obj[i].addr;
		}
	} while (w.more && nseen < SEEN_MAX);
	dlerror();               /* the probes' failures are not the program's */
}

void *got_dlopen(void *(*f)(Lmid_t, const char *, int), Lmid_t lmid, const char *file,
                 int mode)
{
	in_dlopen++;
	void *h = f ? f(lmid, file, mode) : got_real_dlopen(file, mode);
	in_dlopen--;
	if (h && lmid == LM_ID_BASE && !(mode & RTLD_NOLOAD))
		got_scan();
	return h;
}

/* A thread that is not inside another dlopen holds none of the loader's
 * locks, so it may wait for the walk in progress (its object is then
 * patched before its dlopen returns); inside one (a constructor's dlopen),
 * the walker may be waiting for the loader's lock this thread holds.  The
 * wait is bounded all the same: a library's constructor run by glibc
 * itself (NSS, iconv) is inside a dlopen the shim does not see. */
static int lock_scan(void)
{
	if (pthread_mutex_trylock(&scan_lock) == 0)
		return 1;
	if (in_dlopen)
		return 0;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	return pthread_mutex_timedlock(&scan_lock, &until) == 0;
}

void got_scan(void)
{
	if (in_scan || getauxval(AT_SECURE))
		return;
	if (!lock_scan()) {
		/* The holder walks again before it lets go (see the top). */
		__atomic_store_n(&scan_again, 1, __ATOMIC_RELEASE);
		if (pthread_mutex_trylock(&scan_lock) != 0)
			return;
	}
	in_scan = 1;
	do {
		__atomic_store_n(&scan_again, 0, __ATOMIC_RELAXED);
		walk_once();
	} while (__atomic_load_n(&scan_again, __ATOMIC_ACQUIRE));
	in_scan = 0;
	pthread_mutex_unlock(&scan_lock);
	/* asked for between the last check and the unlock */
	if (__atomic_load_n(&scan_again, __ATOMIC_ACQUIRE))
		got_scan();
}

/* A fork child has one thread: a walk in another thread of the parent
 * left the lock taken. */
static void got_after_fork_child(void)
{
	pthread_mutex_init(&scan_lock, NULL);
	in_scan = 0;
}

/* Objects loaded before the shim: the program's start-up libraries. */
__attribute__((constructor)) static void got_init(void)
{
	pthread_atfork(NULL, NULL, got_after_fork_child);
	got_scan();
}
