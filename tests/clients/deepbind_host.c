/*
 * deepbind_host.c - loads modules that bind libpq directly, as PHP loads
 * its extensions (tests/integration/t_deepbind.sh).
 *
 *   deepbind_host CONNINFO CMD...
 *     now PATH     dlopen(PATH, RTLD_NOW | RTLD_DEEPBIND): the current module
 *     lazy PATH    dlopen(PATH, RTLD_LAZY | RTLD_DEEPBIND)
 *     run          the current module's mod_run()
 *     inner PATH   the current module's mod_run_inner(PATH)
 *     close        dlclose the current module
 *     thread PATH  in a new thread: dlopen PATH (RTLD_NOW | RTLD_DEEPBIND),
 *                  mod_run, dlclose; joined
 *     threads N PREFIX
 *                  N threads at once (a barrier), thread i doing the same with
 *                  PREFIX<i>.so; joined
 * Prints "RUN <backend pid>" for every run, after "CTOR <pid>": what the
 * constructor of the library it is linked with (deepbind_mod.c built with
 * -DCTOR) did before main.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int mod_ctor_pid;

static const char *conninfo;

static int run_in(void *h)
{
	int (*run)(const char *) = (int (*)(const char *))dlsym(h, "mod_run");
	return run ? run(conninfo) : -1;
}

#define THREADS_MAX 16

struct job {
	char path[4096];
	pthread_barrier_t *start;  /* or NULL */
	int pid;
};

static void *thread_main(void *arg)
{
	struct job *j = arg;
	if (j->start)
		pthread_barrier_wait(j->start);
	void *h = dlopen(j->path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (!h)
		fprintf(stderr, "deepbind_host: %s\n", dlerror());
	j->pid = h ? run_in(h) : -1;
	if (h)
		dlclose(h);
	return NULL;
}

static int report(int pid)
{
	if (pid <= 0)
		return 1;
	printf("RUN %d\n", pid);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: deepbind_host CONNINFO CMD...\n");
		return 2;
	}
	conninfo = argv[1];
	if (mod_ctor_pid <= 0)
		return 1;
	printf("CTOR %d\n", mod_ctor_pid);
	void *h = NULL;
	for (int i = 2; i < argc; i++) {
		const char *cmd = argv[i];
		if ((!strcmp(cmd, "now") || !strcmp(cmd, "lazy")) && i + 1 < argc) {
			int mode = (cmd[0] == 'n' ? RTLD_NOW : RTLD_LAZY) | RTLD_LOCAL | RTLD_DEEPBIND;
			h = dlopen(argv[++i], mode);
			if (!h) {
				fprintf(stderr, "deepbind_host: %s\n", dlerror());
				return 1;
			}
		} else if (!strcmp(cmd, "run") && h) {
			if (report(run_in(h)))
				return 1;
		} else if (!strcmp(cmd, "inner") && h && i + 1 < argc) {
			int (*inner)(const char *, const char *) =
				(int (*)(const char *, const char *))dlsym(h, "mod_run_inner");
			if (!inner || report(inner(argv[++i], conninfo)))
				return 1;
		} else if (!strcmp(cmd, "close") && h) {
			dlclose(h);
			h = NULL;
		} else if (!strcmp(cmd, "thread") && i + 1 < argc) {
			static struct job j;
			pthread_t th;
			snprintf(j.path, sizeof j.path, "%s", argv[++i]);
			if (pthread_create(&th, NULL, thread_main, &j) != 0)
				return 1;
			pthread_join(th, NULL);
			if (report(j.pid))
				return 1;
		} else if (!strcmp(cmd, "threads") && i + 2 < argc) {
			static struct job jobs[THREADS_MAX];
			pthread_t th[THREADS_MAX];
			pthread_barrier_t start;
			int n = atoi(argv[++i]);
			const char *prefix = argv[++i];
			if (n < 1 || n > THREADS_MAX)
				return 2;
			pthread_barrier_init(&start, NULL, (unsigned)n);
			for (int k = 0; k < n; k++) {
				snprintf(jobs[k].path, sizeof jobs[k].path, "%s%d.so", prefix, k);
				jobs[k].start = &start;
				if (pthread_create(&th[k], NULL, thread_main, &jobs[k]) != 0)
					return 1;
			}
			for (int k = 0; k < n; k++)
				pthread_join(th[k], NULL);
			for (int k = 0; k < n; k++)
				if (report(jobs[k].pid))
					return 1;
		} else {
			fprintf(stderr, "deepbind_host: bad command %s\n", cmd);
			return 2;
		}
	}
	return 0;
}
