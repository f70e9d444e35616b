#!/usr/bin/env bash
# tests/bench/run.sh - `make bench`: start a throw-away primary + streaming
# replica (tests/integration/pgbed.sh) and a PgBouncer, run the benchmarks,
# write tests/bench/results.md (the README links to it and quotes it), and
# leave nothing running.  Nothing here passes or fails; it measures.
#
# Every comparison is a ratio taken within this one run: the contenders
# alternate (A B C A B C ...) and each round's ratio is taken between runs
# made next to each other; tables show the median of the rounds with the
# spread (min-max).  Other work on the machine moves the absolute figures,
# much less the ratios.  Progress goes to stderr.
#
# Knobs (environment): BENCH_N (callgrind transactions, 3000), BENCH_ROUNDS
# (callgrind rounds, 5), BENCH_TROUNDS (rounds of the timed runs, 3),
# BENCH_TROUNDS_MAX (the throughput runs come last and take more rounds, up
# to this, 7, while the whole stays within BENCH_BUDGET seconds, 480),
# BENCH_SECS (length of a throughput / connect run, 5), BENCH_CAP_SECS (a run
# under the cap, 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../integration/pgbed.sh
. "$root/tests/integration/pgbed.sh"
unset LD_PRELOAD PQSHIM_POLICY PGOPTIONS PGSERVICE

PGBIN=/usr/lib/postgresql/15/bin
PGBENCH=$PGBIN/pgbench
PQSHIM=$root/build/pqshim
LIB=$root/build/libpqshim.so
PY=/usr/bin/python3
N=${BENCH_N:-3000} ROUNDS=${BENCH_ROUNDS:-5} TR=${BENCH_TROUNDS:-3} TRMAX=${BENCH_TROUNDS_MAX:-7}
BUDGET=${BENCH_BUDGET:-480}
SECS=${BENCH_SECS:-5} CAPSECS=${BENCH_CAP_SECS:-3}
t_start=$(date +%s)

work=$(mktemp -d /tmp/pqshim-bench.XXXXXX)
chmod 0755 "$work"
d=$work/data
mkdir "$d"
pgb_pid='' bg_pid=''
cleanup() {
	set +e
	[ -n "$bg_pid" ] && kill "$bg_pid" 2>/dev/null && wait "$bg_pid" 2>/dev/null
	[ -n "${fill_pid:-}" ] && kill "$fill_pid" 2>/dev/null && wait "$fill_pid" 2>/dev/null
	if [ -n "$pgb_pid" ]; then
		kill "$pgb_pid" 2>/dev/null && wait "$pgb_pid" 2>/dev/null
	fi
	pgbed_stop >/dev/null 2>&1
	rm -f "/dev/shm/pqshim.$(id -u).bench-$$-"*
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

log() { printf '[bench +%3ds] %s\n' $(($(date +%s) - t_start)) "$*" >&2; }
notes=$work/notes
: >"$notes"
note() { log "NOTE: $*"; echo "- $*" >>"$notes"; }

# ---- small statistics ------------------------------------------------------
# stats FILE: "median min max" of the numbers in FILE, one a line
stats() {
	sort -g "$1" | awk '{ v[NR] = $1 } END {
		if (!NR) { print "nan nan nan"; exit }
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		print m, v[1], v[NR] }'
}
# ratios A B: B/A line by line (round by round)
ratios() { paste -d' ' "$1" "$2" | awk '{ printf "%.4f\n", ($1 > 0 ? $2 / $1 : 0) }'; }
# show FILE FORMAT: "median (min-max)" with printf FORMAT for each number
show() {
	local med min max
	read -r med min max < <(stats "$1")
	# shellcheck disable=SC2059
	printf "$2 ($2-$2)" "$med" "$min" "$max"
}
med() { stats "$1" | cut -d' ' -f1; }
# rshow FILE: a ratio's "median (min-max)", marked † when the rounds disagree
# by more than a fifth of the median (the machine's other load, most often)
rshow() {
	show "$1" %.3f
	stats "$1" | awk '$1 > 0 && ($3 - $2) > 0.2 * $1 { printf " †" }'
}
# shellcheck disable=SC2016  # the backquotes are Markdown
NOISY='† the rounds disagree by more than a fifth of the median: other jobs on the machine
took the CPUs during some runs; read the median with care, or run `make bench` again.'
maxof() { stats "$1" | cut -d' ' -f3; }

# ---- running pgbench ---------------------------------------------------------
# pgrun KEY COMMAND...: one pgbench run; appends its tps, average latency
# (ms) and failed transactions to $d/KEY.{tps,lat}.
pgrun() {
	local key=$1 o=$work/pgbench.out tps lat fail
	shift
	"$@" >"$o" 2>&1 || true
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$o")
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$o")
	fail=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$o")
	if [ -z "$tps" ] || [ "${fail:-0}" != 0 ] || grep -q 'aborted\|error' "$o"; then
		note "$key: pgbench reported a failure: $(grep -m2 -i 'error\|aborted\|fail' "$o" | tr '\n' ' ')"
	fi
	echo "${tps:-0}" >>"$d/$key.tps"
	echo "${lat:-0}" >>"$d/$key.lat"
}

# sampled KEY COMMAND...: pgrun with the server-side sampler beside it (not
# under the shim: pg_stat_activity on the primary every 20 ms); appends the
# peak number of busy client backends to $d/KEY.peak.
sampled() {
	local key=$1 i peak n ival
	shift
	rm -f "$work/ready"
	"$PY" "$here/bench.py" sample "$PQT_PRIMARY_PORT" "$work/ready" >"$work/sample.out" 2>>"$work/sample.err" &
	bg_pid=$!
	for ((i = 0; i < 100; i++)); do [ -e "$work/ready" ] && break; sleep 0.05; done
	pgrun "$key" "$@"
	kill -TERM "$bg_pid"
	wait "$bg_pid" || true
	bg_pid=
	read -r peak n ival <"$work/sample.out" || true
	echo "${peak:-nan}" >>"$d/$key.peak"
	echo "${ival:-nan}" >>"$d/$key.ival"
}

# ---- PgBouncer -----------------------------------------------------------------
if ! command -v pgbouncer >/dev/null && [ -x /usr/sbin/pgbouncer ]; then PATH=$PATH:/usr/sbin; fi
if ! command -v pgbouncer >/dev/null && [ "$(id -u)" = 0 ]; then
	log "installing pgbouncer (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >"$work/apt.log" 2>&1 ||
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >"$work/apt.log" 2>&1; } || true
	PATH=$PATH:/usr/sbin
fi
have_pgb=
command -v pgbouncer >/dev/null && have_pgb=1

# pgb_start: PgBouncer as a non-root user (postgres when root), Unix socket
# only, in its own directory, transaction pooling, trust.  Database pqt: a
# pool of 40 (above the 16 clients of the largest run); pqt3: a pool of 3
# (the same limit as the cap).
pgb_start() {
	pgb_dir=$work/pgbouncer
	mkdir -m 0755 "$pgb_dir"
	pgb_port=$((40000 + RANDOM % 20000))   # names the socket in our own directory: always free
	cat >"$pgb_dir/pgbouncer.ini" <<-EOF
		[databases]
		pqt = host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=pqt
		pqt3 = host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=pqt pool_size=3
		[pgbouncer]
		listen_port = $pgb_port
		unix_socket_dir = $pgb_dir
		auth_type = trust
		auth_file = $pgb_dir/users.txt
		pool_mode = transaction
		max_client_conn = 200
		default_pool_size = 40
		logfile = $pgb_dir/pgbouncer.log
		log_connections = 0
		log_disconnections = 0
	EOF
	echo '"postgres" ""' >"$pgb_dir/users.txt"
	local as=()
	if [ "$(id -u)" = 0 ]; then
		chown -R postgres: "$pgb_dir"
		as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
	fi
	(cd "$pgb_dir" && exec "${as[@]}" pgbouncer "$pgb_dir/pgbouncer.ini") >"$work/pgbouncer.out" 2>&1 &
	pgb_pid=$!
	local i
	for ((i = 0; i < 100; i++)); do
		[ -S "$pgb_dir/.s.PGSQL.$pgb_port" ] && return 0
		kill -0 "$pgb_pid" 2>/dev/null || break
		sleep 0.05
	done
	note "PgBouncer did not start: $(tail -n 3 "$work/pgbouncer.out" "$pgb_dir/pgbouncer.log" 2>/dev/null | tr '\n' ' ')"
	have_pgb=
	return 1
}

# ---- the test bed --------------------------------------------------------------
log "starting a PostgreSQL 15 primary + streaming replica"
pgbed_start >"$work/bed.log" 2>&1 || { cat "$work/bed.log"; exit 1; }
"$PGBENCH" -i -q -s 1 >/dev/null 2>&1
if [ -n "$have_pgb" ]; then pgb_start || true; fi
[ -n "$have_pgb" ] || note "PgBouncer is not installed: its rows are left out"

pol() { # pol NAME LINE...: a policy file with its own segment; prints its path
	local name=$1 f=$work/$1.ini
	shift
	printf '%s\n' "$@" "[shim]" "segment = bench-$$-$name" "log = $work/shim.log" >"$f"
	chmod 600 "$f"
	# older than the reload's settling time: a process starting at once
	# would otherwise load it again on its first tick, in the counts
	touch -d '1 minute ago' "$f"
	echo "$f"
}
P_TRACK=$(pol tracking "[tracking]" "cross_thread = warn")
P_CAP=$(pol cap "[cap]" "max_active = 1000" "max_connections = 1000")
P_RO=$(pol rooff "[read_only]" "flag_file = $work/never.flag" \
	"primary = port=$PQT_PRIMARY_PORT" "replica = port=$PQT_REPLICA_PORT")
echo 'select pg_sleep(0.01);' >"$work/sleep.sql"

DIRECT=("$PGBENCH")
SHIM=("$PQSHIM" run -p "$P_TRACK" -- "$PGBENCH")
BOUNCER=("$PGBENCH" -h "${pgb_dir:-none}" -p "${pgb_port:-0}")

res=$work/results.md
{
	echo "Measured by \`make bench\` on $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
	echo "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start;"
	echo "$("$PGBENCH" --version), $( [ -n "$have_pgb" ] && pgbouncer --version | head -1 || echo "no PgBouncer"),"
	echo "Python $("$PY" -c 'import sys, psycopg2; print(sys.version.split()[0], "with psycopg2", psycopg2.__version__.split()[0])')."
	echo "Command: \`make bench\` (tests/bench/run.sh with BENCH_N=$N BENCH_ROUNDS=$ROUNDS BENCH_TROUNDS=$TR BENCH_TROUNDS_MAX=$TRMAX BENCH_BUDGET=$BUDGET BENCH_SECS=$SECS BENCH_CAP_SECS=$CAPSECS)."
	echo "The servers: a throw-away PostgreSQL 15 primary and streaming replica on Unix"
	echo "sockets (tests/integration/pgbed.sh: fsync off), \`pgbench -i -s 1\`; everything on this one machine."
	echo "Other jobs were running on the machine at the same time: absolute figures are noisy,"
	echo "so every comparison is a ratio between runs made next to each other in this run,"
	echo "the contenders alternating (A B C A B C ...); the tables show the median of the"
	echo "rounds and the spread (min-max)."
	echo
} >"$res"

# ---- 1. overhead per transaction ----------------------------------------------------
log "overhead per transaction (callgrind, $ROUNDS rounds x 5 contenders x 2 modes, then an event loop)"
# passthru: the floor, a preload of the same wrappers that only call libpq
# (tests/bench/passthru.c, built by make bench, never shipped)
export OVERHEAD_CONTENDERS="tracking-only=$P_TRACK cap-uncontended=$P_CAP read-only-off=$P_RO passthru=@$root/build/bench/passthru/libpqshim.so"
{
	echo "### 1. Overhead per transaction (client-side instructions, callgrind)"
	echo
	echo "\`tests/bench/overhead.sh $N MODE $ROUNDS\`: callgrind counts pgbench's own instructions for"
	echo "$N and $((2 * N)) transactions of \`pgbench -n -S\` (one client); the difference over $N is the"
	echo "steady cost of one transaction, start-up and connection cancelled. Each round runs"
	echo "direct, tracking-only, cap-uncontended, read-only-off, passthru in turn; the overhead is the"
	echo "ratio to direct within the round."
	echo
	for mode in simple prepared; do
		"$here/overhead.sh" "$N" "$mode" "$ROUNDS"
		echo
	done
	echo "One thread driving four connections (\`-c 4 -j 1\`: pgbench's event loop, like an async"
	echo "driver's pool), $((N / 4)) and $((N / 2)) transactions per connection, 3 rounds:"
	echo
	"$here/overhead.sh" $((N / 4)) simple 3 4
	echo
	echo "- *tracking-only*: a policy with \`[tracking]\` only; *cap-uncontended*: \`max_active = 1000\`,"
	echo "  \`max_connections = 1000\`: every transaction takes and gives back a slot (the fast path:"
	echo "  compare-and-swaps in the shared segment, no system call); *read-only-off*: \`[read_only]\` with \`primary\`, \`replica\` and a"
	echo "  \`flag_file\` that does not exist: the connection matches the primary, read-only is off;"
	echo "  *passthru*: the floor, \`tests/bench/passthru.c\` (bench only): a preload library of the"
	echo "  same wrappers that only jumps to libpq's functions, what any interposer pays (one"
	echo "  indirect jump per call: 3 per transaction)."
	echo "- \"inside the shim\" counts the instructions executed in libpqshim.so, including the"
	echo "  code inlined into its wrappers from shim/*.h and the compiler's headers (the time stamp),"
	echo "  and the libpq status calls it adds. The wrappers run once per call pgbench makes (the"
	echo "  same in every run): this figure does not move between runs."
	echo "- A thread remembers the last $(sed -n 's/^#define FAST_WAYS \([0-9]*\).*/\1/p' "$root/shim/shim.h") connections it sent on (shim.h, FAST_WAYS): an event loop's"
	echo "  statements take the fast path too; a thread cycling through more connections than"
	echo "  that takes the whole path (work_begin) every time, as every thread did before."
	echo "- *read-only-off* costs the same as tracking-only, inside the shim and in libc: a"
	echo "  single-threaded program gets no thread of the shim's (README \"Draining without a thread\"),"
	echo "  so glibc keeps its single-threaded path in every cancellable system call (\`send\`, \`recv\`,"
	echo "  \`ppoll\`). Before, a \`[read_only]\` policy started the shim's drain thread, and those calls"
	echo "  took the multi-threaded path (\`__pthread_enable_asynccancel\` and its pair): about 150"
	echo "  instructions per transaction, 2%; \`tests/bench/nothread.sh\` measures both builds side by"
	echo "  side. Programs that run threads of their own keep the shim's thread, and pay that anyway."
	echo "- The total varies by several percent from run to run, direct libpq included, because"
	echo "  pgbench polls its socket a timing-dependent number of times: that noise, not the shim,"
	echo "  is most of the spread of the total; \"inside the shim\" is the figure to watch."
	echo
	echo "Where the instructions inside the shim go, per \`pgbench -S -M simple\` transaction"
	echo "(\`tests/bench/breakdown.sh $N simple POLICY\`: the same callgrind difference, per function;"
	echo "code inlined from a header is filed under the header and the function it went into):"
	echo
	echo "cap-uncontended:"
	echo
	"$here/breakdown.sh" "$N" simple "$P_CAP"
	echo
	echo "tracking-only:"
	echo
	"$here/breakdown.sh" "$N" simple "$P_TRACK"
	echo
	echo "Per transaction pgbench makes three wrapped calls: \`PQsendQuery\` (the fast send: the"
	echo "map epoch, which also carries the depth mark, and the connection against the thread's"
	echo "table, the slot's CAS protocol, two counters, the TSC stamp and the tick's compare, the"
	echo "call, the test of its answer) and \`PQgetResult\` twice (a result, then NULL: only the"
	echo "NULL one looks further, in \`get_result_settle\` and \`settle_after_result\`: the"
	echo "connection's status, async state and transaction state read in place in one test, a"
	echo "counter and a state store; the first, with a result ready, is two compares and a tail"
	echo "call to libpq). The cap's part is its parked slot (README \"The cap\", cap.h): at the"
	echo "statement's end one CAS on the connection's own hold (HELD -> PARKED) and one load of the"
	echo "semaphore word (two shifts: nobody waits, no flag, no sweep since), at the next send one"
	echo "CAS back (PARKED -> HELD) and the holder's thread stored; the shared word is not written."
	echo "\`-M prepared\` sends with \`PQsendQueryPrepared\`, seven"
	echo "arguments: with six in registers and the seventh on the stack, the wrapper has too few"
	echo "free registers for its work and saves six (about 20 instructions more than the"
	echo "two-argument \`PQsendQuery\`)."
	echo
} >"$work/s1.md"

# ---- 3. connect cost ---------------------------------------------------------------------
cnames=(direct shim)
if [ -n "$have_pgb" ]; then cnames+=(bouncer); fi
log "connect cost: pgbench -C -S -c 4 -j 4, ${SECS} s runs, $TR rounds x ${#cnames[@]} contenders"
for ((r = 1; r <= TR; r++)); do
	log "    round $r/$TR"
	pgrun con-direct "${DIRECT[@]}" -n -C -S -c 4 -j 4 -T "$SECS"
	pgrun con-shim "${SHIM[@]}" -n -C -S -c 4 -j 4 -T "$SECS"
	if [ -n "$have_pgb" ]; then pgrun con-bouncer "${BOUNCER[@]}" -n -C -S -c 4 -j 4 -T "$SECS"; fi
done
{
	echo "### 3. Connect cost: a new connection per transaction"
	echo
	echo "\`pgbench -n -C -S -c 4 -j 4 -T $SECS\` (\`-M simple\`), $TR rounds, the contenders in turn."
	echo
	echo "| contender | tps, median (min-max) | tps ratio to direct, median (min-max) | average latency, ms (median) |"
	echo "|---|---:|---:|---:|"
	echo "| direct libpq | $(show "$d/con-direct.tps" %.0f) | - | $(med "$d/con-direct.lat") |"
	ratios "$d/con-direct.tps" "$d/con-shim.tps" >"$d/con-shim.ratio"
	echo "| pqshim tracking-only | $(show "$d/con-shim.tps" %.0f) | $(rshow "$d/con-shim.ratio") | $(med "$d/con-shim.lat") |"
	if [ -n "$have_pgb" ]; then
		ratios "$d/con-direct.tps" "$d/con-bouncer.tps" >"$d/con-bouncer.ratio"
		echo "| PgBouncer (transaction pooling) | $(show "$d/con-bouncer.tps" %.0f) | $(rshow "$d/con-bouncer.ratio") | $(med "$d/con-bouncer.lat") |"
	fi
	echo
	echo "Through PgBouncer a new client connection is a Unix-socket accept and a pooled server"
	echo "connection, no new backend process: it does not pay PostgreSQL's fork. pqshim pays the"
	echo "server's connect like direct libpq, plus its own per-connection work (a record claimed in"
	echo "the segment, the connect parameters resolved)."
	echo
} >"$work/s3.md"

# ---- 4. under the cap ----------------------------------------------------------------------
log "under the cap: pg_sleep(0.01) x 12 clients, cap 3, ${CAPSECS} s runs, $TR rounds"
for ((r = 1; r <= TR; r++)); do
	log "    round $r/$TR"
	sampled cap-direct "${DIRECT[@]}" -n -c 3 -j 3 -T "$CAPSECS" -f "$work/sleep.sql"
	p=$(pol "cap3-$r" "[cap]" "max_active = 3")    # a fresh segment: this run's waits only
	sampled cap-shim "$PQSHIM" run -p "$p" -- "$PGBENCH" -n -c 12 -j 12 -T "$CAPSECS" -f "$work/sleep.sql"
	"$PQSHIM" stat -p "$p" --json >"$work/stat.json"
	jq -r .cap.wait_ms_p99 "$work/stat.json" >>"$d/cap-shim.p99"
	jq -r .cap.wait_ms_p50 "$work/stat.json" >>"$d/cap-shim.p50"
	jq -r .cap.waits "$work/stat.json" >>"$d/cap-shim.waits"
	jq -r .cap.timeouts "$work/stat.json" >>"$d/cap-shim.timeouts"
	if [ -n "$have_pgb" ]; then
		sampled cap-bouncer "${BOUNCER[@]}" -n -c 12 -j 12 -T "$CAPSECS" -f "$work/sleep.sql" pqt3
	fi
done
for k in direct shim bouncer; do
	if [ -f "$d/cap-$k.tps" ]; then awk '{ printf "%.4f\n", $1 / 300 }' "$d/cap-$k.tps" >"$d/cap-$k.ideal"; fi
done
{
	echo "### 4. Under the cap: 12 clients, 3 slots"
	echo
	echo "A script of \`select pg_sleep(0.01)\`, ${CAPSECS} s runs, $TR rounds, in turn: direct libpq with 3 clients"
	echo "(the reference: 3 at a time with no waiting), pqshim with \`max_active = 3\` and 12 clients"
	echo "(\`-c 12 -j 12\`, each client its own thread: capped exactly), and PgBouncer with a pool"
	echo "of 3 (\`pool_size = 3\`, transaction pooling) and the same 12 clients. The ideal is"
	echo "3 / 10 ms = 300 tps. Server peak: the most client backends not idle in"
	echo "\`pg_stat_activity\` on the primary, sampled every 20 ms by a separate Python process"
	echo "(not under the shim) during each run, the largest over the rounds. The p99 wait is"
	echo "\`pqshim stat -p POLICY --json\` \`.cap.wait_ms_p99\` (a fresh segment per round): the"
	echo "histogram's buckets are powers of two in microseconds, so it reads as \"at most\"."
	echo
	echo "| run | tps, median (min-max) | against the ideal 300 tps, median (min-max) | average latency, ms (median) | server peak of busy backends | pqshim wait p50 / p99, ms (median) |"
	echo "|---|---:|---:|---:|---:|---:|"
	echo "| direct, 3 clients | $(show "$d/cap-direct.tps" %.1f) | $(show "$d/cap-direct.ideal" %.3f) | $(med "$d/cap-direct.lat") | $(maxof "$d/cap-direct.peak") | - |"
	echo "| pqshim, \`max_active = 3\`, 12 clients | $(show "$d/cap-shim.tps" %.1f) | $(show "$d/cap-shim.ideal" %.3f) | $(med "$d/cap-shim.lat") | $(maxof "$d/cap-shim.peak") | $(med "$d/cap-shim.p50") / $(med "$d/cap-shim.p99") |"
	[ -z "$have_pgb" ] ||
		echo "| PgBouncer, \`pool_size = 3\`, 12 clients | $(show "$d/cap-bouncer.tps" %.1f) | $(show "$d/cap-bouncer.ideal" %.3f) | $(med "$d/cap-bouncer.lat") | $(maxof "$d/cap-bouncer.peak") | - |"
	echo
	if [ -n "$have_pgb" ]; then
		ratios "$d/cap-bouncer.tps" "$d/cap-shim.tps" >"$d/cap-shim-bouncer.ratio"
		echo "pqshim's throughput over PgBouncer's, round by round: $(rshow "$d/cap-shim-bouncer.ratio")."
	fi
	echo "pqshim's waits per run: $(med "$d/cap-shim.waits") (median), timeouts: $(maxof "$d/cap-shim.timeouts") at most;"
	echo "the sampler took a sample every $(med "$d/cap-shim.ival") ms (median)."
	echo
} >"$work/s4.md"

# ---- 5. read-only switch --------------------------------------------------------------------
log "read-only switch: 50 connections in 5 processes, $TR rounds on and off"
P_SW=$(pol switch "[read_only]" "flag_file = $work/read-only.flag" \
	"primary = port=$PQT_PRIMARY_PORT" "replica = port=$PQT_REPLICA_PORT")
"$PY" "$here/bench.py" switch "$P_SW" "$work/read-only.flag" "$LIB" "$TR" "$PQSHIM" >"$work/switch.out" 2>"$work/switch.err" ||
	note "the switch measurement failed: $(tail -n 3 "$work/switch.err" | tr '\n' ' ')"
grep -v '^errors' "$work/switch.out" | awk '{ print $1 >"'"$d"'/sw-first-on"; print $2 >"'"$d"'/sw-empty-on";
	print $3 >"'"$d"'/sw-first-off"; print $4 >"'"$d"'/sw-empty-off" }'
{
	echo "### 5. Switching to the replica and back"
	echo
	echo "5 Python processes (psycopg2) under a policy with \`[read_only] flag_file\`, \`primary = port=P\`,"
	echo "\`replica = port=R\` (\`on_switch = migrate\`): 10 threads each, each thread with its own"
	echo "connection sending \`select pg_is_in_recovery()\` every 10 ms: 50 connections. The flag"
	echo "file appears (at a random phase), then goes; $TR rounds. *First answer*: the first"
	echo "statement answered by the new side (\`t\` from the replica, \`f\` back on the primary), as"
	echo "the clients time-stamped it. *Old side empty*: none of the 50 left in the old server's"
	echo "\`pg_stat_activity\`, polled every 20 ms by a separate process. Seconds after the flag"
	echo "file appeared or went, median (min-max):"
	echo
	echo "| switch | first answer from the new side | old side empty of the 50 |"
	echo "|---|---:|---:|"
	echo "| to the replica (flag file appears) | $(show "$d/sw-first-on" %.3f) s | $(show "$d/sw-empty-on" %.3f) s |"
	echo "| back to the primary (flag file goes) | $(show "$d/sw-first-off" %.3f) s | $(show "$d/sw-empty-off" %.3f) s |"
	echo
	echo "Errors seen by the clients, migrations and redirects counted by pqshim (\`pqshim stat\`"
	echo "totals): $(grep '^errors' "$work/switch.out" | sed 's/errors \([0-9]*\) migrations \([0-9]*\) redirects \([0-9]*\)/\1 errors, \2 migrations, \3 redirects/')."
	echo "Each process looks at the flag file on its own half-second tick, so every process notices"
	echo "within 0.5 s; each connection then moves at its next statement (here within 10 ms)."
	echo
} >"$work/s5.md"

# ---- 6. policy reload ------------------------------------------------------------------------
log "policy reload: max_active 3 -> 1 -> 3 under load, $TR rounds"
P_RL=$(pol reload "[cap]" "max_active = 3")
"$PY" "$here/bench.py" reload "$P_RL" "$PQSHIM" "$LIB" "$work/sleep.sql" "$TR" >"$work/reload.out" 2>"$work/reload.err" ||
	note "the reload measurement failed: $(tail -n 3 "$work/reload.err" | tr '\n' ' ')"
awk '$1 == "down" { print $2 >"'"$d"'/rl-down-stat"; print $3 >"'"$d"'/rl-down-srv"; print $4 >"'"$d"'/rl-down-peak" }
     $1 == "up" { print $2 >"'"$d"'/rl-up-stat"; print $3 >"'"$d"'/rl-up-srv" }' "$work/reload.out"
{
	echo "### 6. Policy reload"
	echo
	echo "3 pgbench processes (4 clients each, \`-j 4\`, the \`pg_sleep(0.01)\` script) under \`max_active = 3\`"
	echo "(the server saw $(sed -n 's/^before //p' "$work/reload.out") busy backends before the first change). The policy file is replaced"
	echo "(written aside, renamed over) with \`max_active = 1\`, then back to 3; $TR rounds. *pqshim"
	echo "stat*: until \`pqshim stat --json\` \`.cap.max_active\` (the shared segment's cap, set by the"
	echo "first process that notices) shows the new value, polled every ~10 ms. *Server*: lowering:"
	echo "until the primary's \`pg_stat_activity\`, sampled every 20 ms, never again shows more than"
	echo "1 busy backend (the last sample above 1, plus one period); raising: until it first shows"
	echo "more than 1. Seconds after the rename, median (min-max):"
	echo
	echo "| change | pqshim stat shows it | the server follows |"
	echo "|---|---:|---:|"
	echo "| max_active 3 -> 1 | $(show "$d/rl-down-stat" %.3f) s | $(show "$d/rl-down-srv" %.3f) s |"
	echo "| max_active 1 -> 3 | $(show "$d/rl-up-stat" %.3f) s | $(show "$d/rl-up-srv" %.3f) s |"
	echo
	echo "After each lowering the server's peak from 0.7 s on was $(maxof "$d/rl-down-peak") busy backend(s) at most."
	echo "Each process looks at the file on its own half-second tick and the first to notice sets"
	echo "the cap in the shared segment for all, so the latency is the earliest of the processes'"
	echo "ticks (0-0.5 s), and running transactions (10 ms) finish under the old cap."
	echo
} >"$work/s6.md"

# ---- 2. throughput and latency -------------------------------------------------------
names=(direct shim direct_ext)
if [ -n "$have_pgb" ]; then names+=(bouncer); fi
contender() { # contender NAME ARGS...: run pgbench as NAME with ARGS
	local name=$1
	shift
	case $name in
	direct) "${DIRECT[@]}" -M prepared "$@" ;;
	shim) "${SHIM[@]}" -M prepared "$@" ;;
	direct_ext) "${DIRECT[@]}" -M extended "$@" ;;
	bouncer) "${BOUNCER[@]}" -M extended "$@" ;;
	esac
}
# Last of the timed runs: at least $TR rounds, more (up to $TRMAX) while the
# time budget allows; a round is 1, 4 and 16 clients, each with every contender.
log "throughput: pgbench -S at 1, 4, 16 clients, ${SECS} s runs, $TR to $TRMAX rounds x ${#names[@]} contenders"
for n in "${names[@]}"; do contender "$n" -n -S -c 16 -j 16 -T 1 >/dev/null 2>&1 || true; done   # warm up
round_secs=$((3 * ${#names[@]} * (SECS + 1)))
TPR=0
while [ "$TPR" -lt "$TR" ] || { [ "$TPR" -lt "$TRMAX" ] &&
	[ $(($(date +%s) - t_start + round_secs + 15)) -le "$BUDGET" ]; }; do
	TPR=$((TPR + 1))
	log "    round $TPR (at least $TR, at most $TRMAX; about ${round_secs} s each)"
	for c in 1 4 16; do
		for n in "${names[@]}"; do pgrun "tp-$c-$n" contender "$n" -n -S -c "$c" -j "$c" -T "$SECS"; done
	done
done
label() {
	case $1 in
	direct) echo "direct libpq, -M prepared" ;;
	shim) echo "pqshim tracking-only, -M prepared" ;;
	direct_ext) echo "direct libpq, -M extended" ;;
	bouncer) echo "PgBouncer (transaction pooling), -M extended" ;;
	esac
}
{
	echo "### 2. Throughput and latency: \`pgbench -S\`"
	echo
	echo "\`pgbench -n -S -M prepared -c C -j C -T $SECS\` (select-only, one thread per client), $TPR rounds,"
	echo "the contenders in turn within each round (a round: 1, 4, 16 clients). PgBouncer $( [ -n "$have_pgb" ] && pgbouncer --version | head -1 | cut -d' ' -f2) cannot keep"
	echo "protocol-level prepared statements in transaction pooling (that came in 1.21), so"
	echo "\`-M prepared\` fails through it (\`prepared statement \"P_0\" already exists\`): it runs"
	echo "\`-M extended\` (the same extended protocol, an unnamed statement parsed each time) and is"
	echo "compared with direct libpq in the same mode. Ratio: the contender's tps over its"
	echo "direct reference's in the same round."
	echo
	echo "| clients | contender | tps, median (min-max) | tps ratio to direct, median (min-max) | average latency, ms (median) |"
	echo "|---:|---|---:|---:|---:|"
	for c in 1 4 16; do
		for n in "${names[@]}"; do
			case $n in
			shim) ratios "$d/tp-$c-direct.tps" "$d/tp-$c-shim.tps" >"$d/tp-$c-shim.ratio" ;;
			bouncer) ratios "$d/tp-$c-direct_ext.tps" "$d/tp-$c-bouncer.tps" >"$d/tp-$c-bouncer.ratio" ;;
			esac
			rt=-
			if [ -f "$d/tp-$c-$n.ratio" ]; then rt=$(rshow "$d/tp-$c-$n.ratio"); fi
			echo "| $c | $(label "$n") | $(show "$d/tp-$c-$n.tps" %.0f) | $rt | $(med "$d/tp-$c-$n.lat") |"
		done
	done
	echo
	echo "On 2 cores pgbench, the servers and PgBouncer share the CPUs: at 4 and 16 clients the"
	echo "machine is saturated and the figures measure CPU spent per transaction on both sides."
	echo "At 1 client pgbench and its backend ping-pong, and the rate depends mostly on whether"
	echo "the scheduler puts the two on the same core: on this machine a run lands on one of two"
	echo "levels about 2.5 times apart, whatever the contender, so the 1-client ratio is the"
	echo "noisiest figure here; the instruction counts of section 1 are the shim's cost."
	echo
} >"$work/s2.md"

# ---- 8. across hosts (tests/bench/cluster.sh) -----------------------------------------------
# shellcheck source=cluster.sh
. "$here/cluster.sh"

# ---- 9. cost as the segment fills up (tests/bench/scale.sh) ------------------------------------
# shellcheck source=scale.sh
. "$here/scale.sh"

# ---- 7. the shim's own fast paths ------------------------------------------------------------
log "the shim's own fast paths"
timeout 120 "$root/build/bench/fastpath" >"$work/fastpath.out" 2>&1 ||
	note "build/bench/fastpath failed: $(tail -n 2 "$work/fastpath.out" | tr '\n' ' ')"
timeout 120 "$root/build/bench/handoff" 4000 >"$work/handoff.out" 2>&1 ||
	note "build/bench/handoff failed: $(tail -n 2 "$work/handoff.out" | tr '\n' ' ')"
{
	echo "### 7. The shim's own fast paths"
	echo
	echo "| measure | value | method |"
	echo "|---|---:|---|"
	awk '
		BEGIN { m["slot_acquire_release_ns"] = "an uncontended slot acquire + release as the shim does them (compare-and-swaps on the semaphore word and the holder, no system call)"
		        m["map_lookup_ns"] = "a connection look-up in the lock-free map (a probe, the per-thread cache bypassed)"
		        m["tsc_read_ns"] = "a TSC read (the time stamp of every statement)" }
		NF == 2 && $1 ~ /_ns$/ { printf "| %s | %s ns | `build/bench/fastpath`: %s; 10 million calls in a tight loop on one core, CLOCK_MONOTONIC around the loop, the best of 5 |\n", $1, $2, m[$1] }' "$work/fastpath.out"
	awk '$1 == "handoff_us" {
		how = "`build/bench/handoff 4000`: two processes pass one slot (max_active = 1) back and forth through the real cap code in a real segment; the releaser stamps CLOCK_MONOTONIC and releases while the other waits, the waiter stamps again once it holds the slot: the grant and the claim under the lock, and between them the futex wake and scheduling, or nothing once the waiter foretells the release and spins through it (README \"Design\": the hand-off)"
		printf "| slot hand-off between processes, median | %s µs | %s |\n| slot hand-off between processes, p99 | %s µs | the same, %d hand-offs |\n", $2, how, $3, $4 }' "$work/handoff.out"
	echo
} >"$work/s7.md"

took=$(($(date +%s) - t_start))
for f in "$work"/s[1-9].md; do
	cat "$f" >>"$res"
	if grep -q '†' "$f"; then printf '%s\n\n' "$NOISY" >>"$res"; fi
done
{
	if [ -s "$notes" ]; then
		echo "### Notes from this run"
		echo
		cat "$notes"
		echo
	fi
	echo "The whole of tests/bench/run.sh took $((took / 60)) min $((took % 60)) s (the build not included)."
} >>"$res"
mv "$res" "$here/results.md"
log "done in ${took} s: $here/results.md"
cat "$here/results.md"
