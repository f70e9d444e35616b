#!/usr/bin/env bash
# tests/bench/breakdown.sh - where the shim's instructions per `pgbench -S`
# transaction go, function by function (what overhead.sh sums as "inside
# the shim").
#
# Method: as overhead.sh (callgrind on pgbench, N and 2N transactions, the
# difference over N), with --dump-instr=yes so that code inlined from a
# header is filed under the header and the function it was inlined into
# ("shim.h:PQsendQuery": work_fast inlined into the PQsendQuery wrapper).
# Prints a Markdown table: instructions per transaction, file:function,
# largest first, and the total.
#
# BREAKDOWN_ONLY=REGEX: print only the sum of the functions whose name
# (after the colon) matches REGEX (scale.sh: the statement path alone,
# without what a connect costs).
#
# Usage: breakdown.sh N MODE POLICY with PG* pointing at a database
# initialised with `pgbench -i`; POLICY's file should be older than the
# reload's settling time (run.sh's pol does that).  BREAKDOWN_LIB: another
# build's libpqshim.so (before/after).  A short run first makes the
# policy's segment, so that neither measured run pays its creation (the
# first process on a segment sets up its cap and lanes: one-off work that
# the difference of the two runs would show as a negative row).
set -euo pipefail
N=${1:-3000} MODE=${2:-simple} POLICY=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
lib=${BREAKDOWN_LIB:-$root/build/libpqshim.so}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
LD_PRELOAD=$lib PQSHIM_POLICY=$POLICY /usr/lib/postgresql/15/bin/pgbench -n -S -M "$MODE" -t 1 \
	>/dev/null 2>&1 || true
for n in "$N" $((2 * N)); do
	LD_PRELOAD=$lib PQSHIM_POLICY=$POLICY valgrind --tool=callgrind \
		--dump-instr=yes --callgrind-out-file="$out/cg.$n" \
		/usr/lib/postgresql/15/bin/pgbench -n -S -M "$MODE" -c 1 -j 1 -t "$n" >/dev/null 2>&1
	callgrind_annotate --inclusive=no --threshold=100 --auto=no "$out/cg.$n" 2>/dev/null >"$out/a.$n"
done
python3 - "$out/a.$N" "$out/a.$((2 * N))" "$N" "${BREAKDOWN_ONLY:-}" <<'PY'
import re, sys
def load(path):
    d = {}
    for line in open(path):
        m = re.match(r'\s*([\d,]+)\s+\([^)]*\)\s+(\S+)', line)
        if not m or 'PROGRAM' in line:
            continue
        name = m.group(2)
        # the shim's own files, and the compiler's headers inlined into them
        if not (re.search(r'(^|/)(shim|policy)/\w+\.[ch]:', name) or
                (re.search(r'/gcc/.*/include/\w+\.h:', name) and 'libpqshim' in line) or
                re.search(r'/gcc/.*/include/\w+\.h:PQ', name)):
            continue
        name = re.sub(r'^.*/((shim|policy)/)', r'\1', name)
        name = re.sub(r'^.*/include/', '', name)
        d[name] = d.get(name, 0) + int(m.group(1).replace(',', ''))
    return d
a, b, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / n, k) for k in set(a) | set(b))
rows = [r for r in rows if abs(r[0]) >= 0.5]
rows.reverse()
if sys.argv[4]:
    print("%.0f" % sum(v for v, k in rows if re.search(sys.argv[4], k.split(':')[-1])))
    sys.exit(0)
print("| instructions / transaction | file:function (callgrind) |")
print("|---:|---|")
for v, k in rows:
    print("| %.0f | `%s` |" % (v, k))
print("| **%.0f** | total |" % sum(v for v, _ in rows))
PY
