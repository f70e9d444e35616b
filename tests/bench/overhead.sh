#!/usr/bin/env bash
# tests/bench/overhead.sh - client-side instructions per `pgbench -S`
# transaction: direct libpq against the same pgbench under the shim.
#
# Method: callgrind counts the instructions of the client (pgbench) only, for
# two run lengths (N and 2N transactions); the difference divided by N is the
# steady per-transaction cost, with start-up, connection and exit cancelled.
# The contenders alternate within each round (direct, A, B, ..., direct, A,
# B, ...), and each contender's overhead is the ratio to direct in the same
# round: the median over ROUNDS rounds, with the spread (min-max).
# Two figures per contender:
#  - total: all of pgbench's instructions.  pgbench polls the socket, and how
#    often it finds the answer not yet there depends on timing, so this
#    varies by a few percent between runs;
#  - in the shim: the instructions executed inside libpqshim.so (its own
#    functions and the code inlined into its wrappers, which callgrind files
#    under the header it came from: any file in a shim/ or policy/ directory,
#    however callgrind_annotate prints it: it shortens the paths under the
#    current directory to relative ones; and the compiler's own headers, such
#    as ia32intrin.h for the time stamp) plus the libpq status calls the shim
#    makes (PQtransactionStatus), less those direct libpq makes itself.  The
#    wrappers run once per call the program makes: the same in every run.
#
# Usage: overhead.sh [N] [MODE] [ROUNDS] [CLIENTS] with PG* pointing at a database
# initialised with `pgbench -i`.  Contenders: NAME=POLICY pairs in
# $OVERHEAD_CONTENDERS (default "tracking-only=" : the shim with no policy;
# NAME=POLICY@LIB runs another build's libpqshim.so).
# Prints a Markdown table; progress goes to stderr.
set -euo pipefail
N=${1:-2000}
MODE=${2:-simple}
# CLIENTS > 1: that many connections driven by one thread (-j 1: pgbench's
# event loop), N transactions each
CLIENTS=${4:-1}
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
		"$PGBENCH" -n -S -M "$MODE" -c "$CLIENTS" -j 1 -t "$n" >/dev/null 2>&1
	callgrind_annotate --threshold=100 "$out/cg" 2>/dev/null | awk '
		/PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
		/^-- Auto-annotated/ { done = 1 }
		done { next }
		$1 ~ /^[0-9,]+$/ && ($0 ~ /libpqshim\.so\]/ || $0 ~ /(^|[ \/])(shim|policy)\/[A-Za-z0-9_]+\.[ch]:/ \
		                    || $0 ~ /\/gcc\/.*\/include\/[A-Za-z0-9_]+\.h:/) {
			gsub(",", "", $1); shim += $1 }
		/:PQtransactionStatus \[/ { gsub(",", "", $1); status += $1 }
		END { print total, shim + 0, status + 0 }'
}

# one env... : prints "total shim status" per transaction (2N run minus N run)
one() {
	local at as ast bt bs bst
	read -r at as ast < <(run "$N" "$@")
	read -r bt bs bst < <(run $((2 * N)) "$@")
	local x=$((N * CLIENTS))
	echo $(( (bt - at) / x )) $(( (bs - as) / x )) $(( (bst - ast) / x ))
}

names=(direct) envs=("PQSHIM_BENCH=direct")
for pair in ${OVERHEAD_CONTENDERS:-tracking-only=}; do
	v=${pair#*=} l=${pair##*@}   # NAME=POLICY[@LIB]: another build's library
	[ "$l" = "$pair" ] && l=$lib
	names+=("${pair%%=*}") envs+=("LD_PRELOAD=$l PQSHIM_POLICY=${v%@*}")
done
# $out/c<i>: one line per round, "total shim status"
for ((r = 1; r <= ROUNDS; r++)); do
	printf '[bench]   callgrind -M %s -c %d round %d/%d:' "$MODE" "$CLIENTS" "$r" "$ROUNDS" >&2
	for i in "${!names[@]}"; do
		# shellcheck disable=SC2086
		one ${envs[$i]} >>"$out/c$i"
		printf ' %s' "${names[$i]}" >&2
	done
	echo >&2
done

# median, min and max of a column of numbers on stdin: "med min max"
mmm() {
	sort -g | awk '{ v[NR] = $1 } END {
		print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'
}

read -r base bmin bmax < <(cut -d' ' -f1 "$out/c0" | mmm)
label="-M $MODE"
[ "$CLIENTS" -gt 1 ] && label="$label -c $CLIENTS -j 1"
printf '| pgbench -S %s | instructions / transaction (median of %d, min-max) | total overhead (median of the per-round ratios, min-max) | inside the shim (median, min-max) |\n' "$label" "$ROUNDS"
printf '|---|---:|---:|---:|\n'
printf '| direct libpq | %.0f (%.0f-%.0f) | - | - |\n' "$base" "$bmin" "$bmax"
for ((i = 1; i < ${#names[@]}; i++)); do
	read -r med min max < <(cut -d' ' -f1 "$out/c$i" | mmm)
	# the shim's own instructions plus the status calls it adds, round by round
	read -r smed smin smax < <(paste -d' ' "$out/c0" "$out/c$i" | awk '{ print $5 + $6 - $3 }' | mmm)
	read -r rmed rmin rmax < <(paste -d' ' "$out/c0" "$out/c$i" |
		awk '{ printf "%.3f\n", 100 * ($4 - $1) / $1 }' | mmm)
	awk -v n="$med" -v lo="$min" -v hi="$max" -v b="$base" -v s="$smed" -v slo="$smin" -v shi="$smax" \
		-v name="${names[$i]}" -v rmed="$rmed" -v rmin="$rmin" -v rmax="$rmax" 'BEGIN {
		printf "| pqshim %s | %.0f (%.0f-%.0f) | %+.2f%% (%+.2f%% to %+.2f%%) | %.0f (%.0f-%.0f) = %.2f%% |\n",
			name, n, lo, hi, rmed, rmin, rmax, s, slo, shi, 100 * s / b }'
done
