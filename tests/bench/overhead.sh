#!/usr/bin/env bash
# tests/bench/overhead.sh - client-side instructions per `pgbench -S`
# transaction: direct libpq against the same pgbench under the shim.
#
# Method: callgrind counts the instructions of the client (pgbench) only, for
# two run lengths (N and 2N transactions); the difference divided by N is the
# steady per-transaction cost, with start-up, connection and exit cancelled.
# Two figures per contender:
#  - total: all of pgbench's instructions.  pgbench polls the socket, and how
#    often it finds the answer not yet there depends on timing, so this
#    varies by a few percent between runs: ROUNDS runs, the median shown
#    with the spread;
#  - in the shim: the instructions executed inside libpqshim.so (its own
#    functions and the code inlined into its wrappers, which callgrind files
#    under the header it came from) plus the libpq status calls the shim
#    makes (PQtransactionStatus), which depend only on the calls the program
#    makes: the same in every run.
#
# Usage: overhead.sh [N] [MODE] [ROUNDS] with PG* pointing at a database
# initialised with `pgbench -i`.  Contenders: NAME=POLICY pairs in
# $OVERHEAD_CONTENDERS (default "tracking-only=" : the shim with no policy).
# Prints a Markdown table.
set -euo pipefail
N=${1:-2000}
MODE=${2:-simple}
ROUNDS=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
lib=$root/build/libpqshim.so
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run N env... : callgrind one pgbench run; prints "total shim status"
run() {
	local n=$1; shift
	env "$@" valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
		"$PGBENCH" -n -S -M "$MODE" -t "$n" >/dev/null 2>&1
	callgrind_annotate --threshold=100 "$out/cg" 2>/dev/null | awk -v root="$root" '
		/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
		/^-- Auto-annotated/ { done = 1 }
		done { next }
		$1 ~ /^[0-9,]+$/ && ($0 ~ /libpqshim\.so\]/ || index($0, root "/shim/") || index($0, root "/policy/")) {
			gsub(",", "", $1); shim += $1 }
		/:PQtransactionStatus \[/ { gsub(",", "", $1); status += $1 }
		END { print total, shim + 0, status + 0 }'
}

# measure env... : prints "median_total min_total max_total shim status"
# per transaction
measure() {
	local r at as ast bt bs bst totals=() shim=0 status=0
	for ((r = 0; r < ROUNDS; r++)); do
		read -r at as ast < <(run "$N" "$@")
		read -r bt bs bst < <(run $((2 * N)) "$@")
		totals+=($(( (bt - at) / N )))
		shim=$(( (bs - as) / N )) status=$(( (bst - ast) / N ))
	done
	printf '%s\n' "${totals[@]}" | sort -n | awk -v shim="$shim" -v st="$status" '
		{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[1], v[NR], shim, st }'
}

read -r base bmin bmax _ bstatus < <(measure PQSHIM_BENCH=direct)
printf '| pgbench -S -M %s | instructions / transaction (median of %d, min-max) | total overhead | inside the shim |\n' "$MODE" "$ROUNDS"
printf '|---|---:|---:|---:|\n'
printf '| direct libpq | %d (%d-%d) | - | - |\n' "$base" "$bmin" "$bmax"
for pair in ${OVERHEAD_CONTENDERS:-tracking-only=}; do
	name=${pair%%=*} pol=${pair#*=}
	read -r med min max shim status < <(measure LD_PRELOAD="$lib" PQSHIM_POLICY="$pol")
	shim=$((shim + status - bstatus))   # the status calls the shim adds
	awk -v n="$med" -v lo="$min" -v hi="$max" -v b="$base" -v s="$shim" -v name="$name" 'BEGIN {
		printf "| pqshim %s | %d (%d-%d) | %+.2f%% | %d = %.2f%% |\n",
			name, n, lo, hi, 100 * (n - b) / b, s, 100 * s / b }'
done
