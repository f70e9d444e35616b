#!/usr/bin/env bash
# tests/bench/overhead.sh - client-side instructions per `pgbench -S`
# transaction, direct against under the shim, counted by callgrind.
#
# Method: instructions are counted for two run lengths (N and 2N
# transactions) and subtracted, so that start-up, connection and exit cancel
# out and what remains is the steady per-transaction cost.  callgrind counts
# instructions, not time: the figures repeat exactly whatever else the
# machine is doing.  Only the client (pgbench) is measured, not the server.
#
# Usage: overhead.sh [N] [MODE] -- needs PG* pointing at a server whose
# database was initialised with `pgbench -i`; prints one Markdown row per
# contender.  The policies to compare are given as NAME=POLICY_FILE pairs in
# $OVERHEAD_CONTENDERS (default: tracking-only, an empty policy).
set -euo pipefail
N=${1:-2000}
MODE=${2:-simple}
root=$(cd "$(dirname "$0")/../.." && pwd)
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
lib=$root/build/libpqshim.so

count() {   # count [env...] -- instructions of one pgbench run of $1 transactions
	local n=$1; shift
	env "$@" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		"$PGBENCH" -n -S -M "$MODE" -t "$n" 2>&1 >/dev/null |
		sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

per_xact() {  # per_xact [env...]
	local a b
	a=$(count "$N" "$@"); b=$(count $((2 * N)) "$@")
	echo $(( (b - a) / N ))
}

base=$(per_xact PQSHIM_BENCH=direct)
printf '| contender | instructions / transaction | overhead |\n|---|---:|---:|\n'
printf '| direct libpq | %d | - |\n' "$base"
for pair in ${OVERHEAD_CONTENDERS:-tracking-only=}; do
	name=${pair%%=*} pol=${pair#*=}
	n=$(per_xact LD_PRELOAD="$lib" PQSHIM_POLICY="$pol")
	awk -v n="$n" -v b="$base" -v name="$name" \
		'BEGIN { printf "| pqshim %s | %d | %+.2f%% (%+d) |\n", name, n, 100 * (n - b) / b, n - b }'
done
