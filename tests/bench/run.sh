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

printf '[tracking]\ncross_thread = warn\n[shim]\nsegment = bench-%s\n' $$ >"$work/tracking.ini"
chmod 600 "$work/tracking.ini"
export OVERHEAD_CONTENDERS="tracking-only=$work/tracking.ini"

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
} >"$work/results.md"
rm -f "/dev/shm/pqshim.$(id -u).bench-$$"
mv "$work/results.md" "$here/results.md"
cat "$here/results.md"
