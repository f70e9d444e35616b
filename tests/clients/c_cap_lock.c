/*
 * c_cap_lock.c - for t_out_stopped_lock.sh: a process that holds a
 * segment's cap lock while it is stopped.  No libpq, no shim: it maps the
 * segment file itself (the layout from shim/segment.h) and takes the
 * robust mutex the way the shim does.
 *
 *   c_cap_lock PATH   map PATH, lock its cap's mutex, print "LOCKED <pid>",
 *                     stop itself (SIGSTOP); once continued, unlock, print
 *                     "UNLOCKED" and exit 0.
 */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct stat st;
	int fd = argc == 2 ? open(argv[1], O_RDWR) : -1;
	if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct seg_header)) {
		perror(argc == 2 ? argv[1] : "usage: c_cap_lock SEGMENT-FILE");
		return 2;
	}
	struct seg_header *h = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
	                            MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	int r = pthread_mutex_lock(&h->cap.lock);
	if (r == EOWNERDEAD)
		pthread_mutex_consistent(&h->cap.lock);
	else if (r != 0)
		return 3;
	printf("LOCKED %d\n", (int)getpid());
	fflush(stdout);
	raise(SIGSTOP);
	pthread_mutex_unlock(&h->cap.lock);
	printf("UNLOCKED\n");
	fflush(stdout);
	return 0;
}
