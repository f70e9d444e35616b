#!/usr/bin/env bash
# tests/bench/run.sh - `make bench`: start a throw-away server, run the
# benchmarks, write tests/bench/results.md (included in the README).
# Nothing here passes or fails; it measures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../integration/pgbed.sh
. "$root/tests/integration/pgbed.sh"
work=$(mktemp -d /tmp/pqshim-bench.XXXXXX)
trap 'pgbed_stop >/dev/null 2>&1; rm -rf "$work"' EXIT
chmod 0755 "$work"

pgbed_start >"$work/bed.log" 2>&1 || { cat "$work/bed.log"; exit 1; }
/usr/lib/postgresql/15/bin/pgbench -i -q -s 1 >/dev/null 2>&1

printf '[tracking]\ncross_thread = warn\n[shim]\nsegment = bench-%s-t\n' $$ >"$work/tracking.ini"
printf '[cap]\nmax_active = 1000\nmax_connections = 1000\n[shim]\nsegment = bench-%s-c\n' $$ >"$work/cap.ini"
printf '[cap]\nmax_active = 3\n[shim]\nsegment = bench-%s-3\n' $$ >"$work/cap3.ini"
chmod 600 "$work"/*.ini
export OVERHEAD_CONTENDERS="tracking-only=$work/tracking.ini cap-uncontended=$work/cap.ini"
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
echo 'select pg_sleep(0.01);' >"$work/sleep.sql"

# tps of one pgbench run: tps ARGS...
tps() { "$@" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }

N=${BENCH_N:-3000} ROUNDS=${BENCH_ROUNDS:-5}
{
	echo "### Overhead per transaction (client-side instructions, callgrind)"
	echo
	echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(/usr/lib/postgresql/15/bin/pgbench --version)."
	echo "Command: \`make bench\` (tests/bench/overhead.sh $N MODE $ROUNDS)."
	echo
	for mode in simple prepared; do
		"$here/overhead.sh" "$N" "$mode" "$ROUNDS"
		echo
	done
	echo "\"inside the shim\" counts the instructions executed in libpqshim.so and the"
	echo "libpq status calls it adds: it depends only on the calls pgbench makes and is"
	echo "the same in every run.  The total varies by a few percent from run to run"
	echo "because pgbench polls its socket a timing-dependent number of times."
	echo "\"cap-uncontended\" has max_active and max_connections set far above the load:"
	echo "every transaction takes and gives back a slot (two CASes on the shared word)."
	echo
	echo "### The cap under load"
	echo
	echo "\`select pg_sleep(0.01)\` transactions, 3 s runs, alternating A B A B A B, median of 3:"
	echo
	a=() b=()
	for r in 1 2 3; do
		a+=("$(tps "$PGBENCH" -n -c 3 -j 3 -T 3 -f "$work/sleep.sql")")
		b+=("$(tps "$root/build/pqshim" run -p "$work/cap3.ini" -- "$PGBENCH" -n -c 12 -j 12 -T 3 -f "$work/sleep.sql")")
	done
	ma=$(printf '%s\n' "${a[@]}" | sort -n | sed -n 2p) mb=$(printf '%s\n' "${b[@]}" | sort -n | sed -n 2p)
	echo "| run | tps (median) | runs | against direct -c 3 | against the ideal 300 tps (3 / 10 ms) |"
	echo "|---|---:|---|---:|---:|"
	awk -v a="$ma" -v b="$mb" -v ra="${a[*]}" -v rb="${b[*]}" 'BEGIN {
		printf "| direct, pgbench -c 3 | %.1f | %s | - | %.0f%% |\n", a, ra, 100 * a / 300
		printf "| pqshim max_active = 3, pgbench -c 12 | %.1f | %s | %.0f%% | %.0f%% |\n", b, rb, 100 * b / a, 100 * b / 300 }'
	echo
	echo "### The shim's own fast paths"
	echo
	echo "\`build/bench/fastpath\` (tight loops, best of 5, ns per call) and \`build/bench/handoff\`"
	echo "(a slot passed between two processes through the real cap code; the time from"
	echo "the release to the waiter holding it):"
	echo
	echo '| measure | value |'
	echo '|---|---:|'
	"$root/build/bench/fastpath" | awk '{ printf "| %s | %s ns |\n", $1, $2 }'
	"$root/build/bench/handoff" 4000 | awk '{ printf "| hand-off latency, median | %s µs |\n| hand-off latency, p99 | %s µs |\n", $2, $3 }'
} >"$work/results.md"
rm -f /dev/shm/pqshim.$(id -u).bench-$$-*
mv "$work/results.md" "$here/results.md"
cat "$here/results.md"
