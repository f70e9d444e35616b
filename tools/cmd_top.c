/*
 * cmd_top.c - `pqshim top`: the live view.  Every interval it takes a
 * snapshot (snapshot.c), computes rates against the previous one, and
 * redraws: the cap with a bar, statements/transactions/waits per second,
 * wait quantiles, connections per target, then processes and their threads
 * sorted by the slots they hold.
 *
 * On a terminal it draws on the alternate screen with plain ANSI escapes and
 * reads keys in non-canonical mode (q quits).  Invariant: whatever ends it
 * (q, -n, Ctrl-C, SIGTERM, SIGHUP) or suspends it (Ctrl-Z) the terminal is
 * given back as it was - termios restored, cursor shown, main screen back -
 * because signals only set a flag and every exit goes through
 * restore_terminal().  When stdout
 * is not a terminal it prints a plain snapshot every interval instead.
 */
#include "snapshot.h"
#include "cluster.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: pqshim top [-p POLICY | -s SEGMENT] [-n ITERATIONS] [-d SECONDS]\n"
	"Live view of a segment, redrawn every second (q or Ctrl-C quits).\n"
	"  -p POLICY      the segment of this policy file (default $PQSHIM_POLICY)\n"
	"  -s SEGMENT     the segment of that name\n"
	"  -n ITERATIONS  stop after that many refreshes\n"
	"  -d SECONDS     refresh interval (default 1, at least 0.1)\n"
	"When stdout is not a terminal, prints a plain snapshot every interval.\n";

#define ESC_ALT_ON   "\033[?1049h"
#define ESC_ALT_OFF  "\033[?1049l"
#define ESC_HIDE     "\033[?25l"
#define ESC_SHOW     "\033[?25h"
#define ESC_HOME     "\033[H"
#define ESC_EOL      "\033[K"
#define ESC_EOS      "\033[J"

/* ---- the terminal ------------------------------------------------------ */

static volatile sig_atomic_t stop_signal;   /* the signal that asks us to end */
static volatile sig_atomic_t resized;
static volatile sig_atomic_t suspended;     /* Ctrl-Z: give the terminal back first */
static struct termios saved_tio;
static int tio_saved, screen_on;

static void on_stop(int sig) { stop_signal = sig; }
static void on_winch(int sig) { (void)sig; resized = 1; }
static void on_tstp(int sig) { (void)sig; suspended = 1; }

/* No SA_RESTART: a signal interrupts the wait, so it is acted on at once. */
static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = on_winch;
	sigaction(SIGWINCH, &sa, NULL);
}

static void catch_suspend(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_tstp;
	sigaction(SIGTSTP, &sa, NULL);
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void write_str(const char *s)
{
	write_all(STDOUT_FILENO, s, strlen(s));
}

/* Keys one at a time, no echo; ISIG stays on so Ctrl-C is a SIGINT. */
static void enter_terminal(int keys)
{
	if (keys && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		struct termios raw = saved_tio;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
			tio_saved = 1;
	}
	write_str(ESC_ALT_ON ESC_HIDE ESC_HOME ESC_EOS);
	screen_on = 1;
}

static void restore_terminal(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = 0;
	}
	if (screen_on) {
		write_str(ESC_SHOW ESC_ALT_OFF);
		screen_on = 0;
	}
}

/* Ctrl-Z: the shell gets its terminal back as it was; on `fg` we draw again. */
static void suspend_self(int keys)
{
	suspended = 0;
	restore_terminal();
	signal(SIGTSTP, SIG_DFL);
	raise(SIGTSTP);                   /* stopped here until SIGCONT */
	catch_suspend();
	enter_terminal(keys);
}

static void terminal_size(unsigned *rows, unsigned *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* ---- what the view shows ---------------------------------------------- */

/* A connection's counters in the previous snapshot, by record index. */
struct prev_counts {
	uint32_t gen;
	int live;
	uint64_t queries, xacts;
};

/* A process or a thread: what it holds and how fast it works. */
struct row {
	int32_t pid, tid;
	const char *program;
	uint32_t threads, conns, held, waiting, active;
	double qps, tps;
};

struct view {
	const struct snapshot *cur, *prev;          /* prev NULL on the first frame */
	double dt;                                  /* seconds between them */
	struct prev_counts *before;                 /* one per connection record */
	const char *segname;
};

static double rate(uint64_t now, uint64_t then, double dt)
{
	return now > then && dt > 0 ? (double)(now - then) / dt : 0;
}

static void remember_counts(const struct snapshot *s, struct prev_counts *before, uint32_t n)
{
	memset(before, 0, n * sizeof *before);
	for (int i = 0; i < s->nconns; i++) {
		const struct snap_conn *c = &s->conns[i];
		before[c->idx] = (struct prev_counts){ c->r.gen, 1, c->r.queries, c->r.xacts };
	}
}

/* Work done by one connection since the previous frame; all of it for a
 * connection opened since. */
static void conn_delta(const struct view *v, const struct snap_conn *c,
                       uint64_t *dq, uint64_t *dx)
{
	const struct prev_counts *p = &v->before[c->idx];
	int same = p->live && p->gen == c->r.gen;
	*dq = c->r.queries - (same && p->queries <= c->r.queries ? p->queries : 0);
	*dx = c->r.xacts - (same && p->xacts <= c->r.xacts ? p->xacts : 0);
}

/* The thread a connection belongs to now: the slot's holder, else its last
 * user, else its opener. */
static int32_t conn_thread(const struct seg_conn *c)
{
	if (snap_holds_slot(c) && c->holder_tid)
		return c->holder_tid;
	return c->last_tid ? c->last_tid : c->tid;
}

static void add_conn(struct row *r, const struct view *v, const struct snap_conn *c)
{
	uint64_t dq, dx;
	r->conns++;
	r->held += snap_holds_slot(&c->r);
	r->waiting += c->r.hold[SEM_ACTIVE] == HOLD_WAITING;
	r->active += c->r.cstate == CS_ACTIVE || c->r.cstate == CS_IN_TRANSACTION;
	if (v->prev) {
		conn_delta(v, c, &dq, &dx);
		r->qps += v->dt > 0 ? (double)dq / v->dt : 0;
		r->tps += v->dt > 0 ? (double)dx / v->dt : 0;
	}
}

/* Most slots held first, then waiting, busy, connections, speed. */
static int by_holding(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->held != y->held)
		return x->held < y->held ? 1 : -1;
	if (x->waiting != y->waiting)
		return x->waiting < y->waiting ? 1 : -1;
	if (x->active != y->active)
		return x->active < y->active ? 1 : -1;
	if (x->conns != y->conns)
		return x->conns < y->conns ? 1 : -1;
	if (x->qps != y->qps)
		return x->qps < y->qps ? 1 : -1;
	if (x->pid != y->pid)
		return x->pid > y->pid ? 1 : -1;
	return (x->tid > y->tid) - (x->tid < y->tid);
}

static void header_lines(FILE *out, const struct view *v)
{
	const struct snapshot *s = v->cur;
	const struct snap_policy *p = &s->policy;
	char when[32], path[SEG_PATH_MAX], err[SEG_ERROR_MAX];
	time_t t = (time_t)(s->taken_ns / 1000000000u);
	struct tm tm;
	strftime(when, sizeof when, "%H:%M:%S", localtime_r(&t, &tm));
	snap_printable(path, sizeof path, p->path[0] ? p->path : "(none)");
	fprintf(out, "pqshim top  %s  segment %s  policy %s (generation %llu)  %s\n", when,
	        v->segname, path, (unsigned long long)p->generation,
	        p->read_only ? "READ-ONLY" : "read-write");
	if (p->error[0]) {
		snap_printable(err, sizeof err, p->error);
		fprintf(out, "policy error: %s\n", err);
	}
}

static void cap_lines(FILE *out, const struct view *v)
{
	const struct snapshot *s = v->cur;
	const struct snap_cap *c = &s->cap;
	char bar[48];
	fprintf(out, "cap %-7s active %3u", c->scope, c->active);
	if (c->max_active) {
		snap_format_bar(bar, sizeof bar, c->active, c->max_active, 30);
		fprintf(out, "/%-3u %s", c->max_active, bar);
	} else {
		fputs("/-   (no cap)", out);
	}
	fprintf(out, "  waiting %u  connections %u", c->waiting, c->connections);
	if (c->max_connections)
		fprintf(out, "/%u", c->max_connections);
	fputc('\n', out);
	if (v->prev) {
		const struct snapshot *p = v->prev;
		fprintf(out, "rates   %.1f stmt/s  %.1f xact/s  %.1f waits/s  %.1f timeouts/s  "
		        "%.1f connects/s",
		        rate(s->totals.queries, p->totals.queries, v->dt),
		        rate(s->totals.xacts, p->totals.xacts, v->dt),
		        rate(s->cap.waits, p->cap.waits, v->dt),
		        rate(s->cap.timeouts, p->cap.timeouts, v->dt),
		        rate(s->totals.connects, p->totals.connects, v->dt));
	} else {
		fputs("rates   - (after the next refresh)", out);
	}
	fprintf(out, "\nwaits   %llu  timeouts %llu  p50 %.3fms  p99 %.3fms\n",
	        (unsigned long long)c->waits, (unsigned long long)c->timeouts,
	        c->wait_ms_p50, c->wait_ms_p99);
	fprintf(out, "totals  queries %llu  xacts %llu  connects %llu  refused %llu  "
	        "cross-thread %llu  leaked %llu\n",
	        (unsigned long long)s->totals.queries, (unsigned long long)s->totals.xacts,
	        (unsigned long long)s->totals.connects, (unsigned long long)s->totals.refused,
	        (unsigned long long)s->totals.cross_thread_uses,
	        (unsigned long long)s->totals.leaked);
}

static void target_lines(FILE *out, const struct snapshot *s)
{
	unsigned n[3][5] = { { 0 } }, all[3] = { 0 };
	for (int i = 0; i < s->nconns; i++) {
		const struct seg_conn *c = &s->conns[i].r;
		if (c->target < 3 && c->cstate < 5) {
			n[c->target][c->cstate]++;
			all[c->target]++;
		}
	}
	fputs("targets", out);
	for (unsigned t = 0; t < 3; t++) {
		fprintf(out, "  %s %u", snap_target_word(t), all[t]);
		if (all[t])
			fprintf(out, " (%u active, %u in_transaction, %u idle, %u waiting, %u connecting)",
			        n[t][CS_ACTIVE], n[t][CS_IN_TRANSACTION], n[t][CS_IDLE],
			        n[t][CS_WAITING], n[t][CS_CONNECTING]);
	}
	fputc('\n', out);
	for (int i = 0; i < s->nwaiters && i < 5; i++) {
		char age[16];
		const struct snap_waiter *w = &s->waiters[i];
		snap_format_age(age, sizeof age, s->taken_ns > w->since_ns ? s->taken_ns - w->since_ns : 0);
		fprintf(out, "%s pid %d tid %d for %s", i ? "," : "queue  ", w->pid, w->tid, age);
	}
	if (s->nwaiters)
		fprintf(out, "%s\n", s->nwaiters > 5 ? ", ..." : "");
}

static void thread_lines(FILE *out, const struct view *v, int32_t pid, struct row *rows)
{
	const struct snapshot *s = v->cur;
	int n = 0;
	for (int i = 0; i < s->nconns; i++) {
		const struct snap_conn *c = &s->conns[i];
		if (c->r.pid != pid)
			continue;
		int32_t tid = conn_thread(&c->r);
		int k = 0;
		while (k < n && rows[k].tid != tid)
			k++;
		if (k == n)
			rows[n++] = (struct row){ .pid = pid, .tid = tid };
		add_conn(&rows[k], v, c);
	}
	qsort(rows, (size_t)n, sizeof rows[0], by_holding);
	for (int k = 0; k < n; k++) {
		const struct row *r = &rows[k];
		/* Under the process's columns: no THR, then CONN HELD WAIT. */
		fprintf(out, "  tid %-19d %4s %4u %4u %4u", r->tid, "", r->conns, r->held, r->waiting);
		if (v->prev)
			fprintf(out, " %9.1f %8.1f\n", r->qps, r->tps);
		else
			fprintf(out, " %9s %8s\n", "-", "-");
	}
}

static void process_lines(FILE *out, const struct view *v)
{
	const struct snapshot *s = v->cur;
	struct row *procs = calloc((size_t)s->nprocs + 1, sizeof *procs);
	struct row *threads = calloc((size_t)s->nconns + 1, sizeof *threads);
	if (!procs || !threads) {
		free(procs);
		free(threads);
		fputs("(out of memory)\n", out);
		return;
	}
	for (int i = 0; i < s->nprocs; i++) {
		procs[i] = (struct row){ .pid = s->procs[i].pid, .program = s->procs[i].program,
		                         .threads = s->procs[i].threads };
		for (int k = 0; k < s->nconns; k++)
			if (s->conns[k].r.pid == procs[i].pid)
				add_conn(&procs[i], v, &s->conns[k]);
	}
	qsort(procs, (size_t)s->nprocs, sizeof procs[0], by_holding);
	fprintf(out, "\n%-8s %-16s %4s %4s %4s %4s %9s %8s\n", "PID", "PROGRAM", "THR", "CONN",
	        "HELD", "WAIT", "STMT/S", "XACT/S");
	for (int i = 0; i < s->nprocs; i++) {
		const struct row *r = &procs[i];
		char program[SEG_PROGRAM_MAX];
		snap_printable(program, sizeof program, r->program);
		fprintf(out, "%-8d %-16s %4u %4u %4u %4u", r->pid, program, r->threads, r->conns,
		        r->held, r->waiting);
		if (v->prev)
			fprintf(out, " %9.1f %8.1f\n", r->qps, r->tps);
		else
			fprintf(out, " %9s %8s\n", "-", "-");
		thread_lines(out, v, r->pid, threads);
	}
	if (!s->nprocs)
		fputs("(no process)\n", out);
	free(procs);
	free(threads);
}

static void render(FILE *out, const struct view *v)
{
	header_lines(out, v);
	cap_lines(out, v);
	cluster_table(out, v->cur);
	snap_table_lanes(out, v->cur);
	target_lines(out, v->cur);
	process_lines(out, v);
}

/* ---- drawing ----------------------------------------------------------- */

/* Draw text over the previous frame: each line cut to the width and
 * cleared to its end, no more lines than the screen holds, control bytes
 * (there should be none) shown as '?'. */
static void draw(const char *text, size_t len)
{
	unsigned rows, cols;
	terminal_size(&rows, &cols);
	size_t cap = len + (size_t)rows * 8 + 64, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		return;
	n += (size_t)snprintf(buf, cap, "%s", ESC_HOME);
	unsigned row = 0, col = 0;
	for (size_t i = 0; i < len && row < rows; i++) {
		char ch = text[i];
		if (ch == '\n') {
			memcpy(buf + n, ESC_EOL, sizeof ESC_EOL - 1);
			n += sizeof ESC_EOL - 1;
			row++;
			col = 0;
			if (row < rows)
				buf[n++] = '\n';
			continue;
		}
		if (col++ < cols)
			buf[n++] = (unsigned char)ch < 0x20 || ch == 0x7f ? '?' : ch;
	}
	memcpy(buf + n, ESC_EOS, sizeof ESC_EOS - 1);
	n += sizeof ESC_EOS - 1;
	write_all(STDOUT_FILENO, buf, n);
	free(buf);
}

static void print_plain(const char *text, size_t len, int first)
{
	if (!first)
		fputc('\n', stdout);
	fwrite(text, 1, len, stdout);
	fflush(stdout);
}

/* Wait up to ms for the interval to pass or a key; 1 when it is time to
 * stop ('q', a signal), 0 to refresh. */
static int wait_or_key(long ms, int keys)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (stop_signal)
			return 1;
		if (suspended) {
			suspend_self(keys);
			return 0;
		}
		if (resized) {
			resized = 0;
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (spent >= ms)
			return 0;
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int r = poll(keys ? &pfd : NULL, keys ? 1 : 0, (int)(ms - spent));
		if (r > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
			char ch;
			ssize_t got = read(STDIN_FILENO, &ch, 1);
			if (got == 1 && (ch == 'q' || ch == 'Q'))
				return 1;
			if (got == 1 && ch == ' ')
				return 0;
			if (got <= 0 && (pfd.revents & POLLHUP))
				keys = 0;              /* the terminal went away: stop polling it */
		}
	}
}

/* ---- the command ------------------------------------------------------- */

struct top_options {
	const char *policy, *segment;
	long iterations;          /* 0 = until told to stop */
	double interval;          /* seconds */
};

static int parse_options(int argc, char **argv, struct top_options *o)
{
	*o = (struct top_options){ .interval = 1.0 };
	for (int i = 1; i < argc; i++) {
		char *end;
		if (snap_option(argc, argv, &i, &o->policy, &o->segment))
			continue;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			o->iterations = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || o->iterations < 1) {
				fprintf(stderr, "pqshim top: -n needs a whole number of at least 1, not \"%s\"\n",
				        argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
			o->interval = strtod(argv[++i], &end);
			if (*end || end == argv[i] || !(o->interval >= 0.1 && o->interval <= 86400)) {
				fprintf(stderr, "pqshim top: -d needs seconds from 0.1 to 86400, not \"%s\"\n",
				        argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "pqshim top: unknown option %s\n%s", argv[i], usage);
			return 2;
		}
	}
	return -1;
}

/* Take, render and show frames until -n is reached or we are told to stop. */
static int run_view(struct snap_source *src, const struct top_options *o, int tty, int keys)
{
	struct snapshot *snaps[2] = { snap_new(), snap_new() };
	struct prev_counts *before = calloc(src->seg.max_conns, sizeof *before);
	int rc = 0;
	if (!snaps[0] || !snaps[1] || !before) {
		fputs("pqshim top: out of memory\n", stderr);
		rc = 1;
		goto out;
	}
	struct view v = { .segname = src->segname, .before = before };
	for (long frame = 0; !stop_signal; frame++) {
		struct snapshot *cur = snaps[frame & 1], *prev = snaps[!(frame & 1)];
		snap_take(src, cur);
		if (cur->lost) {
			restore_terminal();
			fprintf(stderr, "pqshim top: %s\n", cur->lost_why);
			rc = 1;
			break;
		}
		cluster_read(&src->seg, cur);
		v.cur = cur;
		v.prev = frame ? prev : NULL;
		v.dt = frame ? (double)(cur->mono_ns - prev->mono_ns) / 1e9 : 0;
		char *text = NULL;
		size_t len = 0;
		FILE *out = open_memstream(&text, &len);
		if (!out) {
			rc = 1;
			break;
		}
		render(out, &v);
		fclose(out);
		if (tty)
			draw(text, len);
		else
			print_plain(text, len, frame == 0);
		free(text);
		remember_counts(cur, before, src->seg.max_conns);
		if (o->iterations && frame + 1 >= o->iterations)
			break;
		if (wait_or_key((long)(o->interval * 1000), keys))
			break;
	}
out:
	snap_free(snaps[0]);
	snap_free(snaps[1]);
	free(before);
	return rc;
}

int cmd_top(int argc, char **argv)
{
	struct top_options o;
	int rc = parse_options(argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct snap_source src;
	rc = snap_open(&src, o.policy, o.segment, "pqshim top");
	if (rc != 0)
		return rc;
	int tty = isatty(STDOUT_FILENO);
	int keys = tty && isatty(STDIN_FILENO);
	catch_signals();
	if (tty) {
		catch_suspend();
		enter_terminal(keys);
	}
	rc = run_view(&src, &o, tty, keys);
	restore_terminal();
	snap_close(&src);
	/* q and Ctrl-C are the ways to quit; being killed is reported. */
	if (stop_signal == SIGTERM || stop_signal == SIGHUP)
		return 128 + stop_signal;
	return rc;
}
