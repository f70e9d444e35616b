# shellcheck shell=bash
# tests/integration/lib.sh: sourced by every tests/integration/t_*.sh (owned by
# the test-bed engineer). Run alone, a test starts its own bed (pgbed.sh);
# under run.sh it uses the runner's bed (PQT_SOCKDIR set). Sourcing it checks
# the build (build/pqshim, build/libpqshim.so) once, for every test.
#
# How to write a test: tests/integration/t_NAME.sh (run.sh runs every t_*.sh),
# a header comment that says what it shows, then, e.g.:
#
#   . "$(dirname "$0")/lib.sh"          # set -euo pipefail, $T, the bed, build checked
#   POL=$(policy_new cap "[cap]
#   max_active = 1
#   ")                                  # $T/cap.ini, with a segment of its own
#   PGAPPNAME=t_x_h psql_hold h "$POL"  # psql under the shim, stdin a fifo held open
#   psql_feed h "begin;" "select 1;"    # returns once psql has run them: h holds the slot
#   PGAPPNAME=t_x_w psql_hold w "$POL"
#   held_send w "select 2;"             # no waiting: w must queue for the slot
#   queued() { [ "$(jqp "$POL" .cap.waiting)" = 1 ]; }
#   wait_until 5 queued || fail "w never queued"           # every wait bounded
#   assert_eq "$(server_activity t_x_w "state || '|' || query")" "idle|" \
#       "server: w has sent nothing"    # what the SERVER sees, then what stat says
#   psql_feed h "commit;"
#   psql_feed w
#   assert_eq "$(cat "$T/w.out")" 2 "w ran once h committed"
#   held_end w 0                        # EOF; it exits within 20 s, with status 0
#
# A program of your own: held_start NAME CMD..., held_ready NAME (its stdout,
# $T/NAME.out, says READY), held_send, held_end. A client of tests/clients:
# client.sh; psycopg2 probes driven line by line and the server-side sampler
# of busy backends: probe.sh. After a change on the primary that a test reads
# on the replica: replica_catch_up. Check that the test fails without the
# change it tests (plant the fault, run it, see it fail).
# Cleaned up at exit, even on failure: held fifos closed (programs see EOF),
# then every held_start/bg_track process and its descendants killed, the
# policies' segments removed, $T removed (when run alone). Use at_exit for
# anything else, never `trap ... EXIT`.
#
# Exports: T (scratch dir) PQSHIM PQSHIM_LIB PSQL PGBENCH PY PQT_ROOT PQT_TMP
#          PQT_TEST, plus the bed's PQT_*/PG* variables (see pgbed.sh).
# Functions: policy_new ro_policy ro_noticed stat_json jqp sql_primary sql_replica
#   server_backends server_activity replica_catch_up
#   wait_until fail note assert_eq assert_ge assert_le assert_match
#   held_start held_ready held_send held_close held_end held_clean (a program
#   held open on a fifo), psql_hold psql_feed (a psql session held open)
#   bg_track PID (killed, with its descendants, at exit)
#   xact_log xact_overlap (transactions that log their start and end)
#   bg_client bg_client_end pid_state killed_under (programs that say RAN or
#   REFUSED; a process's state; a killed process, so that the audit runs)
#   at_exit 'CMD' (extra cleanup, run at exit before tracked pids are killed;
#   use it instead of `trap ... EXIT`, which would replace lib.sh's trap).
# `fail` inside $(...) or a pipeline only ends that subshell, but still marks
# the test failed (checked at exit); under wait_until it only makes CMD false.

set -euo pipefail

PQT_TEST=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
PQT_ROOT=${PQT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PQSHIM=$PQT_ROOT/build/pqshim
PQSHIM_LIB=$PQT_ROOT/build/libpqshim.so
PSQL=/usr/lib/postgresql/15/bin/psql
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
PY=/usr/bin/python3
export PQT_TEST PQT_ROOT PQSHIM PQSHIM_LIB PSQL PGBENCH PY

_PQT_MAIN=$BASHPID
_PQT_BG=()
_PQT_AT_EXIT=()
_PQT_OWN_TMP=
_PQT_OWN_BED=
T=

note() { echo "note: $*" >&2; }

fail() {
	if [ -n "${_PQT_SOFT:-}" ]; then # under wait_until: just make CMD false
		echo "FAIL (in wait_until): $*" >&2
		exit 1
	fi
	echo "FAIL: $*" >&2
	# In a subshell exit only ends the subshell: leave a mark for _pqt_exit.
	[ "$BASHPID" = "$_PQT_MAIN" ] || echo "$*" >>"$T/.failed"
	exit 1
}

assert_eq() {
	[ "$1" = "$2" ] || fail "${3:-assert_eq}: expected '$2', got '$1'"
}

_pqt_num() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
_pqt_cmp() { # ACTUAL OP BOUND MSG
	_pqt_num "$1" && _pqt_num "$3" ||
		fail "${4:-assert}: not numbers: actual '$1', bound '$3'"
	awk -v a="$1" -v b="$3" "BEGIN { exit !(a $2 b) }" ||
		fail "${4:-assert}: expected $2 $3, got '$1'"
}
assert_ge() { _pqt_cmp "$1" '>=' "$2" "${3:-assert_ge}"; }
assert_le() { _pqt_cmp "$1" '<=' "$2" "${3:-assert_le}"; }

assert_match() {
	[[ $1 =~ $2 ]] || fail "${3:-assert_match}: '$1' does not match /$2/"
}

# wait_until SECONDS CMD...: CMD (stdout discarded) every 50 ms until it
# succeeds; on timeout show CMD's last stderr and return 1. CMD's arguments
# are expanded once: put changing values in a function.
wait_until() {
	local end err rc=1
	end=$((${EPOCHREALTIME/./} + $(awk -v s="$1" 'BEGIN { printf "%d", s * 1000000 }')))
	shift
	err=$T/.wait_until.err
	while :; do
		(_PQT_SOFT=1 "$@") >/dev/null 2>"$err" && rc=0 && break
		[ "${EPOCHREALTIME/./}" -lt "$end" ] || break
		sleep 0.05
	done
	if [ "$rc" != 0 ]; then
		echo "wait_until: timed out: $*" >&2
		cat "$err" >&2
	fi
	rm -f "$err"
	return "$rc"
}

# Real psql, never under the shim, against the bed's primary/replica (db pqt).
_pqt_sql() { # PORT SQL [PSQL ARGS...]
	local port=$1 sql=$2
	shift 2
	env -u LD_PRELOAD -u PQSHIM_POLICY -u PGOPTIONS -u PGSERVICE PGAPPNAME=pqt_lib \
		"$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PQT_SOCKDIR" -p "$port" \
		-U postgres -d pqt "$@" <<<"$sql"
}
sql_primary() { _pqt_sql "$PQT_PRIMARY_PORT" "$@"; }
sql_replica() { _pqt_sql "$PQT_REPLICA_PORT" "$@"; }

# server_backends APPNAME [replica]: backends with that application_name.
server_backends() {
	local port=$PQT_PRIMARY_PORT
	[ "${2:-}" = replica ] && port=$PQT_REPLICA_PORT
	_pqt_sql "$port" "select count(*) from pg_stat_activity
		where application_name = :'app' and pid <> pg_backend_pid()" -v app="$1"
}

# server_activity APP COLUMNS [replica]: COLUMNS (SQL over pg_stat_activity,
# e.g. "state" or "state || '|' || query") of each backend with that
# application_name, one line each, by pid.
server_activity() {
	local port=$PQT_PRIMARY_PORT
	[ "${3:-}" = replica ] && port=$PQT_REPLICA_PORT
	_pqt_sql "$port" "select $2 from pg_stat_activity
		where application_name = :'app' and pid <> pg_backend_pid() order by pid" -v app="$1"
}

# replica_catch_up [SECONDS [WHAT]]: wait (10 s) until the replica has
# replayed everything the primary has written so far (so it has every
# commit made before the call); fail naming WHAT and both positions if not.
# (The bed runs synchronous_commit = off, so the write position may lag the
# last commits: a synchronous commit of a transaction that writes WAL, here
# a logical message, flushes all before it, and the replica's replay reaches
# the flush position.)
_pqt_replayed() { [ "$(sql_replica "select pg_last_wal_replay_lsn() >= '$1'")" = t ]; }
replica_catch_up() {
	local lsn
	lsn=$(sql_primary "set synchronous_commit = on;
		do \$\$ begin perform pg_logical_emit_message(true, 'pqt_lib', 'catch up'); end \$\$;
		select pg_current_wal_flush_lsn();") || fail "replica_catch_up: no WAL position"
	wait_until "${1:-10}" _pqt_replayed "$lsn" ||
		fail "${2:-the changes} never reached the replica: replayed up to $(sql_replica \
			"select pg_last_wal_replay_lsn()"), the primary at $lsn"
}

# policy_new NAME [EXTRA_INI_TEXT]: $T/NAME.ini (0600) with a unique segment.
policy_new() {
	local f=$T/$1.ini seg
	seg=pqt-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	(umask 077 && printf '[shim]\nsegment = %s\n%s' "$seg" "${2:-}" >"$f") ||
		fail "policy_new: cannot write $f"
	chmod 0600 "$f"
	echo "$seg" >>"$T/.segments" # removed from /dev/shm at exit
	echo "$f"
}

# ro_policy NAME LOG [KEYS]: policy_new NAME with a [read_only] section:
# flag_file = $FLAG, primary and replica the bed's two servers (by port;
# host=$RO_HOST first when that is set), the further [read_only] KEYS, and
# [shim] log = LOG.
ro_policy() {
	local h=${RO_HOST:+host=$RO_HOST }
	policy_new "$1" "[read_only]
flag_file = $FLAG
primary = ${h}port=$PQT_PRIMARY_PORT
replica = ${h}port=$PQT_REPLICA_PORT
${3:+$3
}[shim]
log = $2"
}

# ro_noticed LOG WORDS [N]: the shim's log LOG has at least N (1) lines
# "read-only WORDS" (an extended regex: on, off, on|off); every process logs
# the switches its own tick sees.
ro_noticed() {
	local n
	n=$(grep -cE "read-only ($2)" "$1" 2>/dev/null) || true
	[ "${n:-0}" -ge "${3:-1}" ]
}

stat_json() {
	local out err=$T/.stat.err.$BASHPID
	out=$("$PQSHIM" stat -p "$1" --json 2>"$err") ||
		fail "pqshim stat -p $1 --json failed: $(cat "$err") $out"
	[ -s "$err" ] && cat "$err" >&2
	rm -f "$err"
	jq . >/dev/null 2>&1 <<<"$out" || fail "pqshim stat -p $1 --json: not JSON: $out"
	printf '%s\n' "$out"
}

jqp() { stat_json "$1" | jq -r "$2"; }

at_exit() { _PQT_AT_EXIT+=("$1"); }
bg_track() { _PQT_BG+=("$@"); }

# --- a program held open on a fifo -----------------------------------------
# held_start NAME CMD...  CMD in the background (its pid in RUN and
#     HELD_PID[NAME]), stdin the fifo $T/NAME.in whose write end the test
#     holds (fd HELD_FD[NAME]), stdout $T/NAME.out, stderr $T/NAME.err. CMD
#     gets no other held fifo's write end, so each program sees EOF when, and
#     only when, its own is closed. Prefix assignments reach CMD
#     (PGAPPNAME=x held_start ...).
# held_ready NAME [REGEX [SECONDS]]  wait (20 s) for a line matching REGEX
#     (^READY$) on its stdout; fail (showing its stderr) if it dies first.
# held_send NAME LINE...  write the lines to its stdin.
# held_close NAME         close its stdin: EOF.
# held_end NAME [STATUS [SECONDS]]  EOF, then wait (20 s) until it exits
#     (fail if not); its exit status in HELD_RC; with STATUS, assert it.
# held_clean CMD...       (in a subshell or background job) exec CMD (or run
#     the shell function CMD) without the write ends of the held fifos: for
#     programs not started by held_start.
declare -A HELD_FD=() HELD_PID=() _PQT_OUT=() _PQT_ERR=()
HELD_RC=
held_clean() {
	local fd
	for fd in "${HELD_FD[@]}"; do exec {fd}>&-; done
	if declare -F "$1" >/dev/null; then # a shell function (that may exec)
		"$@"
		exit
	fi
	exec "$@"
}
_pqt_hold() { # NAME IN OUT ERR FD CMD...: held_start, the files and fd given (FD "": any)
	local name=$1 in=$2 out=$3 err=$4 fd=$5
	shift 5
	[ -z "${HELD_FD[$name]:-}" ] || fail "held_start: $name is already held"
	rm -f "$in"
	mkfifo "$in" || fail "held_start $name: cannot make $in"
	held_clean "$@" <"$in" >"$out" 2>"$err" &
	RUN=$!
	HELD_PID[$name]=$RUN _PQT_OUT[$name]=$out _PQT_ERR[$name]=$err
	bg_track "$RUN"
	if [ -n "$fd" ]; then
		eval "exec $fd>\"\$in\""
	else
		exec {fd}>"$in"
	fi
	HELD_FD[$name]=$fd
}
held_start() {
	local name=$1
	shift
	_pqt_hold "$name" "$T/$name.in" "$T/$name.out" "$T/$name.err" "" "$@"
}
_pqt_ready_or_gone() { grep -Eq "$2" "${_PQT_OUT[$1]}" || ! kill -0 "${HELD_PID[$1]}" 2>/dev/null; }
held_ready() {
	local re=${2:-^READY\$}
	wait_until "${3:-20}" _pqt_ready_or_gone "$1" "$re" ||
		fail "$1 never said /$re/: $(tail -5 "${_PQT_OUT[$1]}" "${_PQT_ERR[$1]}")"
	grep -Eq "$re" "${_PQT_OUT[$1]}" || fail "$1 failed before /$re/: $(tail -5 "${_PQT_ERR[$1]}")"
}
held_send() {
	local name=$1
	shift
	printf '%s\n' "$@" >&"${HELD_FD[$name]}"
}
held_close() {
	local fd=${HELD_FD[$1]:-}
	[ -n "$fd" ] && exec {fd}>&-
	unset "HELD_FD[$1]"
}
_pqt_gone() { ! kill -0 "$1" 2>/dev/null; }
held_end() {
	local name=$1 pid=${HELD_PID[$1]}
	held_close "$name"
	wait_until "${3:-20}" _pqt_gone "$pid" || fail "$name did not exit within ${3:-20} s of EOF"
	HELD_RC=0
	wait "$pid" || HELD_RC=$?
	[ -z "${2:-}" ] ||
		assert_eq "$HELD_RC" "$2" "$name: exit status (stderr: $(tail -5 "${_PQT_ERR[$name]}"))"
}

# --- a psql session held open ----------------------------------------------
# psql_hold NAME POLICY [PSQL ARGS...]: held_start NAME with psql -X -A -t -q
#     -v ON_ERROR_STOP=1 ARGS under the shim (pqshim run -p POLICY, which
#     execs psql: RUN is psql's pid); application_name from PGAPPNAME.
# psql_feed NAME LINE...: send the lines and wait (15 s) until psql has run
#     them all (a `\! touch` after them); fail if it has not (or has died).
declare -A _PQT_FED=()
psql_hold() {
	local name=$1 pol=$2
	shift 2
	held_start "$name" "$PQSHIM" run -p "$pol" -- "$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 "$@"
	_PQT_FED[$name]=0
}
_pqt_fed() { [ -e "$1" ] || [ ! -d "/proc/$2" ]; }
psql_feed() {
	local name=$1 mark
	shift
	_PQT_FED[$name]=$((${_PQT_FED[$name]:-0} + 1))
	mark=$T/$name.done.${_PQT_FED[$name]}
	held_send "$name" "$@" "\\! touch $mark"
	wait_until 15 _pqt_fed "$mark" "${HELD_PID[$name]}" || true
	[ -e "$mark" ] || fail "psql $name did not run: $* (stderr: $(tail -5 "${_PQT_ERR[$name]}"))"
}

_pqt_tree() { # PID and its descendants, children first
	local c
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do _pqt_tree "$c"; done
	echo "$1"
}

_pqt_alive() { # any of PIDS alive?
	local p
	for p; do kill -0 "$p" 2>/dev/null && return 0; done
	return 1
}

_pqt_exit() {
	local rc=$? c p pids=() i seg
	set +eu
	trap - EXIT INT TERM
	for c in "${_PQT_AT_EXIT[@]}"; do eval "$c"; done
	for c in "${!HELD_FD[@]}"; do held_close "$c"; done # EOF first: a clean end
	for p in "${_PQT_BG[@]}"; do
		# shellcheck disable=SC2207
		kill -0 "$p" 2>/dev/null && pids+=($(_pqt_tree "$p"))
	done
	if [ "${#pids[@]}" -gt 0 ]; then
		kill -TERM "${pids[@]}" 2>/dev/null
		for ((i = 0; i < 40; i++)); do # up to 2 s, then SIGKILL
			_pqt_alive "${pids[@]}" || break
			sleep 0.05
		done
		kill -KILL "${pids[@]}" 2>/dev/null
		wait "${_PQT_BG[@]}" 2>/dev/null
	fi
	if [ -n "$T" ] && [ -f "$T/.segments" ]; then
		while read -r seg; do
			[ -n "$seg" ] && rm -f /dev/shm/*"$seg"*
		done <"$T/.segments"
	fi
	if [ -n "$T" ] && [ -s "$T/.failed" ] && [ "$rc" = 0 ]; then
		echo "FAIL: a check failed in a subshell (see above)" >&2
		rc=1
	fi
	[ -n "$_PQT_OWN_BED" ] && pgbed_stop
	[ -n "$_PQT_OWN_TMP" ] && rm -rf "$PQT_TMP"
	exit "$rc"
}

# --- transactions that log themselves (server-side evidence of a cap) -------
# xact_log TABLE SLEEP: a fresh TABLE (id, t0, t1) on the primary, and the
#     pgbench script $T/TABLE.sql whose transaction logs its start (t0) and
#     end (t1) with clock_timestamp() around pg_sleep(SLEEP).
# xact_overlap TABLE [EPOCH]: the most of TABLE's transactions open at one
#     instant, among those that began after EPOCH (seconds; default 0).
xact_log() {
	sql_primary "drop table if exists $1;
		create table $1 (id bigserial primary key, t0 timestamptz not null, t1 timestamptz)"
	printf '%s\n' "begin;" \
		"insert into $1 (t0) values (clock_timestamp()) returning id \\gset" \
		"select pg_sleep($2);" \
		"update $1 set t1 = clock_timestamp() where id = :id;" "commit;" >"$T/$1.sql"
}
xact_overlap() {
	sql_primary "with x as (select t0, t1 from $1
		where t1 is not null and t0 > to_timestamp(${2:-0}))
		select coalesce(max((select count(*) from x b where b.t0 <= a.t0 and b.t1 > a.t0)), 0)
		from x a"
}
trap _pqt_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${PQT_TMP:-}" ]; then
	PQT_TMP=$(mktemp -d /tmp/pqt-run.XXXXXX)
	_PQT_OWN_TMP=1
	chmod 0755 "$PQT_TMP"
fi
export PQT_TMP
T=$PQT_TMP/$PQT_TEST
export T
rm -rf "$T"
mkdir -m 0755 "$T"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first (make all): no $PQSHIM or $PQSHIM_LIB"

if [ -z "${PQT_SOCKDIR:-}" ]; then
	# shellcheck source-path=SCRIPTDIR source=pgbed.sh
	. "$PQT_ROOT/tests/integration/pgbed.sh"
	_PQT_OWN_BED=1
	pgbed_start || fail "could not start the test bed"
fi

# --- programs that say how they ended (the stopped-waiter tests) -----------
# bg_client NAME CMD...: CMD in the background (tracked), its output in
#     $T/NAME.out and .err, its pid in CPID[NAME]
# bg_client_end NAME: waits (12 s) until $T/NAME.out has a line RAN or
#     REFUSED, then for its exit, status 0; $OUT: its output but CONNECTED
# pid_state PID: the state letter of process PID (R, S, T stopped...); "" gone
# killed_under POLICY NAME: a psql under POLICY connects, then is killed -9:
#     the next reap has a dead record, and the audit runs
declare -A CPID
bg_client() {
	local n=$1
	shift
	"$@" >"$T/$n.out" 2>"$T/$n.err" &
	CPID[$n]=$!
	bg_track "$!"
}
_pqt_client_done() { grep -q '^RAN\|^REFUSED' "$T/$1.out"; }
bg_client_end() {
	wait_until 12 _pqt_client_done "$1" || fail "client $1 did not end: $(cat "$T/$1.out" "$T/$1.err")"
	wait "${CPID[$1]}" || fail "client $1: exit status $?"
	OUT=$(grep -v "^CONNECTED" "$T/$1.out")
	note "client $1: $OUT / $(cat "$T/$1.err")"
}
pid_state() { awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null; }
killed_under() {
	PGAPPNAME=$2 psql_hold "$2" "$1"
	psql_feed "$2" '\echo connected'
	kill -KILL "${HELD_PID[$2]}"
	wait "${HELD_PID[$2]}" 2>/dev/null || true
	held_close "$2"
}
