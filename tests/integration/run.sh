#!/usr/bin/env bash
# tests/integration/run.sh [TEST...]: the integration test runner, for make
# check and by hand. Builds nothing (make check builds first). Starts one
# bed (pgbed.sh) for the whole run, runs every tests/integration/t_*.sh (or the
# tests named: t_bed, t_bed.sh or a path), each under `timeout -k 5 120`, and
# prints PASS/FAIL per test, the failing test's log tail, and a last line
# "N passed, M failed". Leaves nothing running or on disk, even on Ctrl-C.
# Env: PQT_TEST_TIMEOUT (seconds, default 120), PQT_LOGDIR (keep logs there).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PQT_ROOT=$(cd "$here/../.." && pwd)
export PQT_ROOT
# shellcheck source-path=SCRIPTDIR source=pgbed.sh
. "$here/pgbed.sh"

tests=()
if [ "$#" -gt 0 ]; then
	for a; do
		a=${a##*/} a=${a%.sh}
		[ -f "$here/$a.sh" ] || { echo "run.sh: no test $here/$a.sh" >&2; exit 2; }
		tests+=("$here/$a.sh")
	done
else
	shopt -s nullglob
	tests=("$here"/t_*.sh) # glob results are sorted
fi

PQT_TMP=
cur= # pid of the running test's `timeout`
cleanup() {
	set +e
	trap - EXIT INT TERM
	if [ -n "$cur" ]; then # timeout forwards TERM to the test's process group
		kill -TERM "$cur" 2>/dev/null
		wait "$cur" 2>/dev/null
		kill -KILL -- "-$cur" 2>/dev/null
	fi
	pgbed_stop
	[ -n "$PQT_TMP" ] && rm -rf "$PQT_TMP"
}
trap cleanup EXIT
# A trap may run inside a redirected call (pgbed's initdb >log): say it on a
# copy of stderr that tests don't inherit.
exec {err}>&2
trap 'echo "run.sh: interrupted" >&$err; exit 130' INT
trap 'exit 143' TERM

PQT_TMP=$(mktemp -d /tmp/pqt-run.XXXXXX)
chmod 0755 "$PQT_TMP"
export PQT_TMP
mkdir "$PQT_TMP/.logs"
[ -n "${PQT_LOGDIR:-}" ] && mkdir -p "$PQT_LOGDIR"

pgbed_start {err}>&- || { echo "run.sh: could not start the test bed" >&2; exit 1; }

bed_ok() {
	[ "$(_pgbed_sql "$PQT_REPLICA_PORT" "select pg_is_in_recovery()")" = t ] &&
		[ "$(_pgbed_sql "$PQT_PRIMARY_PORT" "select count(*) from pg_stat_replication
			where state = 'streaming'")" = 1 ]
}

# Client backends left behind by the last test (polls 2 s: a killed client's
# backend takes a moment to notice). Warns only.
check_backends() {
	local port i q="from pg_stat_activity where backend_type = 'client backend'
		and pid <> pg_backend_pid()"
	for port in "$PQT_PRIMARY_PORT" "$PQT_REPLICA_PORT"; do
		for ((i = 0; i < 40; i++)); do
			[ "$(_pgbed_sql "$port" "select count(*) $q")" = 0 ] && continue 2
			sleep 0.05
		done
		echo "WARNING: $1 left backends on port $port:"
		_pgbed_sql "$port" "select pid, application_name, state, left(query, 60) $q" |
			sed 's/^/    /'
	done
}

passed=0 failed=0
for f in "${tests[@]}"; do
	name=${f##*/} name=${name%.sh}
	log=$PQT_TMP/.logs/$name.log
	start=${EPOCHREALTIME/./}
	timeout -k 5 "${PQT_TEST_TIMEOUT:-120}" bash "$f" >"$log" 2>&1 </dev/null {err}>&- &
	cur=$!
	rc=0
	wait "$cur" || rc=$?
	us=$((${EPOCHREALTIME/./} - start))
	took=$((us / 1000000)).$((us % 1000000 / 100000))s
	# Anything left in the test's process group (timeout made one) is a leak.
	for ((i = 0; i < 20; i++)); do
		pgrep -g "$cur" -r R,S,D,T,t >/dev/null || break
		sleep 0.05
	done
	if [ "$i" = 20 ]; then
		echo "WARNING: $name left processes running (killed):"
		pgrep -a -g "$cur" -r R,S,D,T,t | sed 's/^/    /'
		kill -KILL -- "-$cur" 2>/dev/null || true
	fi
	cur=
	if [ "$rc" = 0 ]; then
		echo "PASS $name ($took)"
		passed=$((passed + 1))
	else
		why="exit $rc"
		[ "$rc" = 124 ] && why="timeout"
		[ "$rc" = 137 ] && why="killed (timeout, then SIGKILL?)"
		echo "FAIL $name ($took, $why)"
		tail -n 40 "$log" | sed 's/^/  | /'
		failed=$((failed + 1))
	fi
	[ -n "${PQT_LOGDIR:-}" ] && cp "$log" "$PQT_LOGDIR/"
	if bed_ok; then
		check_backends "$name"
	else
		echo "WARNING: the bed is broken after $name; restarting it"
		pgbed_stop
		pgbed_start {err}>&- || { echo "run.sh: could not restart the test bed" >&2; exit 1; }
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
