/*
 * cmd_serve.c - `pqshim serve`: the figures of `pqshim stat` over HTTP, for
 * Prometheus and friends to scrape.  GET /metrics answers with the text
 * exposition format 0.0.4 written by the very function that prints
 * `stat --prometheus`, GET /stat.json with that of `stat --json`
 * (tools/stat.h); HEAD works for both; any other path is 404, any other
 * method 405.
 *
 * The HTTP server is libmicrohttpd (linked into the tool only, never into
 * libpqshim.so): a pool of SERVE_THREADS threads, at most SERVE_CONNECTIONS
 * connections, each closed after SERVE_TIMEOUT_S idle seconds, so a slow or
 * stuck scraper can neither pile up threads nor hold the others back for long.
 *
 * Invariants:
 *  - every request opens the segment exactly as `pqshim stat` does
 *    (snap_open), takes a fresh snapshot with everything stat shows
 *    (stat_take: the records, the escaped count, the cluster view) and
 *    unmaps it again: a scrape shows the segment as it is at that moment, a
 *    segment removed and made again is followed, and this file never
 *    creates one itself; a segment missing, or truncated or removed during
 *    the request, is a 503 for that request only;
 *  - the programs never wait for a scrape: a snapshot only copies records
 *    (snapshot.h).  Requests take and write their snapshots one at a time
 *    (take_lock): the escaped object and the cluster view (and its
 *    connection to the coordinator) are the tool's single copies.
 */
#include "cmds.h"
#include "snapshot.h"
#include "stat.h"

#include <errno.h>
#include <pthread.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#define SERVE_DEFAULT_LISTEN "127.0.0.1:9641"
#define SERVE_THREADS        4
#define SERVE_CONNECTIONS    64
#define SERVE_TIMEOUT_S      10

static const char usage[] =
	"usage: pqshim serve [-p POLICY | -s SEGMENT] [--listen ADDR:PORT]\n"
	"Answer HTTP scrapes with the figures of `pqshim stat`, read afresh each time.\n"
	"  -p POLICY           the segment of this policy file (default $PQSHIM_POLICY)\n"
	"  -s SEGMENT          the segment of that name (/dev/shm/pqshim.<uid>.SEGMENT)\n"
	"  --listen ADDR:PORT  where to listen (default " SERVE_DEFAULT_LISTEN "; [::1]:PORT\n"
	"                      for IPv6; port 0 picks a free one, printed at start)\n"
	"  GET /metrics        Prometheus text format 0.0.4 (as stat --prometheus)\n"
	"  GET /stat.json      JSON (as stat --json)\n"
	"Stops cleanly on SIGTERM or SIGINT.\n";

/* What every request needs to find the segment again. */
struct serve_target {
	const char *policy, *segment;
};

enum page { PAGE_NONE, PAGE_METRICS, PAGE_JSON };

/* ---- the pages ---------------------------------------------------------- */

static pthread_mutex_t take_lock = PTHREAD_MUTEX_INITIALIZER;

/* Write the page into a malloc'd buffer (*body, *len); 0 or -1 (the reason
 * is on stderr). */
static int render_locked(const struct serve_target *t, enum page page, char **body, size_t *len)
{
	struct snap_source src;
	if (snap_open(&src, t->policy, t->segment, "pqshim serve") != 0)
		return -1;
	struct snapshot *s = snap_new();
	FILE *out = s ? open_memstream(body, len) : NULL;
	if (!out) {
		fputs("pqshim serve: out of memory\n", stderr);
		snap_free(s);
		snap_close(&src);
		return -1;
	}
	int bad = 0;
	if (stat_take(&src, s) != 0) {
		fprintf(stderr, "pqshim serve: %s\n", s->lost_why);
		bad = 1;
	} else if (page == PAGE_METRICS) {
		stat_write_prometheus(out, s);
	} else {
		stat_write_json(out, s, src.segname);
	}
	if (ferror(out))
		bad = 1;
	if (fclose(out) != 0)
		bad = 1;
	snap_free(s);
	snap_close(&src);
	if (bad) {
		free(*body);
		*body = NULL;
		return -1;
	}
	return 0;
}

static int render(const struct serve_target *t, enum page page, char **body, size_t *len)
{
	pthread_mutex_lock(&take_lock);
	int rc = render_locked(t, page, body, len);
	pthread_mutex_unlock(&take_lock);
	return rc;
}

/* Queue a response whose body is `body` (malloc'd, given away) or, when
 * body is NULL, a copy of the constant `text`. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len, const char *text)
{
	struct MHD_Response *r = body
		? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
		: MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum page page_of(const char *url)
{
	if (!strcmp(url, "/metrics"))
		return PAGE_METRICS;
	if (!strcmp(url, "/stat.json"))
		return PAGE_JSON;
	return PAGE_NONE;
}

/* libmicrohttpd calls this once when a request's headers are in, then once
 * per piece of body, then once more with none left: answer on that last
 * call, after discarding any body (GET and HEAD have none to read). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **req)
{
	static int seen;
	if (!*req) {
		*req = &seen;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", NULL, 0,
		             "pqshim serve: only GET and HEAD are answered\n");
	enum page page = page_of(url);
	if (page == PAGE_NONE)
		return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", NULL, 0,
		             "pqshim serve: no such page; there are /metrics and /stat.json\n");
	char *body = NULL;
	size_t len = 0;
	if (render(cls, page, &body, &len) != 0)
		return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", NULL, 0,
		             "pqshim serve: the segment cannot be read now (see the log)\n");
	return reply(conn, MHD_HTTP_OK,
	             page == PAGE_METRICS ? "text/plain; version=0.0.4" : "application/json",
	             body, len, NULL);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
	fputs("pqshim serve: ", stderr);
	vfprintf(stderr, fmt, ap);
}

/* ---- the command -------------------------------------------------------- */

/* "ADDR:PORT", "[V6ADDR]:PORT" or a host name and port -> *res (freeaddrinfo). */
static int parse_listen(const char *arg, struct addrinfo **res)
{
	char host[256];
	const char *colon = strrchr(arg, ':');
	if (!colon || !colon[1] || (size_t)(colon - arg) >= sizeof host)
		return EAI_NONAME;
	const char *h = arg;
	size_t n = (size_t)(colon - arg);
	if (n >= 2 && arg[0] == '[' && arg[n - 1] == ']') {
		h++;
		n -= 2;
	}
	memcpy(host, h, n);
	host[n] = '\0';
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	return getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, res);
}

/* The address the daemon is bound to, as "http://ADDR:PORT/". */
static void bound_url(struct MHD_Daemon *d, char *buf, size_t size)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char addr[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (info && getsockname(info->listen_fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof addr);
			port = ntohs(a->sin6_port);
			snprintf(buf, size, "http://[%s]:%u/", addr, port);
			return;
		}
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, addr, sizeof addr);
		port = ntohs(a->sin_port);
	}
	snprintf(buf, size, "http://%s:%u/", addr, port);
}

int cmd_serve(int argc, char **argv)
{
	struct serve_target t = { NULL, NULL };
	const char *listen = SERVE_DEFAULT_LISTEN;
	for (int i = 1; i < argc; i++) {
		if (snap_option(argc, argv, &i, &t.policy, &t.segment))
			continue;
		if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
			listen = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "pqshim serve: unknown option %s\n%s", argv[i], usage);
			return 2;
		}
	}
	struct addrinfo *ai = NULL;
	int gai = parse_listen(listen, &ai);
	if (gai != 0) {
		fprintf(stderr, "pqshim serve: cannot listen on \"%s\": %s (--listen ADDR:PORT)\n",
		        listen, gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
		return 2;
	}

	/* A segment that is not there now is an error, as for `pqshim stat`. */
	struct snap_source src;
	int rc = snap_open(&src, t.policy, t.segment, "pqshim serve");
	if (rc != 0) {
		freeaddrinfo(ai);
		return rc > 0 ? rc : 1;
	}
	char segname[sizeof src.segname];
	snprintf(segname, sizeof segname, "%s", src.segname);
	snap_close(&src);

	/* SIGTERM and SIGINT are taken by sigwait() below, in this thread only:
	 * block them before the daemon's threads start, so they inherit it. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The port is only for libmicrohttpd's messages: the address has it. */
	uint16_t port = ntohs(ai->ai_family == AF_INET6
	                      ? ((const struct sockaddr_in6 *)ai->ai_addr)->sin6_port
	                      : ((const struct sockaddr_in *)ai->ai_addr)->sin_port);
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, port, NULL, NULL, on_request, &t,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, NULL,
		MHD_OPTION_SOCK_ADDR, ai->ai_addr,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)SERVE_THREADS,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_TIMEOUT_S,
		MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!d) {
		fprintf(stderr, "pqshim serve: cannot listen on %s: %s\n", listen,
		        errno ? strerror(errno) : "libmicrohttpd refused");
		return 1;
	}
	char url[INET6_ADDRSTRLEN + 32];
	bound_url(d, url, sizeof url);
	printf("pqshim serve: segment %s on %smetrics and %sstat.json\n", segname, url, url);
	fflush(stdout);

	int sig = 0;
	while (sigwait(&stop, &sig) != 0)
		;
	fprintf(stderr, "pqshim serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
	MHD_stop_daemon(d);
	return 0;
}
