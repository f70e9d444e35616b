#!/usr/bin/env bash
# tests/bench/nothread.sh [BASE] [N] [ROUNDS]: what a configured read-only
# policy (off) costs a single-threaded program, against tracking alone, in
# this build and in BASE's (a commit, default b5a5509: before the shim
# stopped starting its thread there), side by side.
#
#  1. overhead.sh's tables (callgrind, pgbench -S: simple, prepared, -c 4
#     -j 1), the four contenders alternating within each round;
#  2. glibc's cancellable system calls (send, recv, ppoll, and the
#     asynccancel pair of the multi-threaded path): calls and instructions
#     per call, per transaction (the difference of an N and a 2N run).  Per
#     call the figure does not depend on how often pgbench happened to poll,
#     which is most of the noise of the totals in 1.
#
# Starts its own servers (tests/integration/pgbed.sh) and builds BASE in a
# temporary directory; leaves nothing behind.  Measures; never fails.
set -euo pipefail
BASE=${1:-b5a5509}
N=${2:-1000}
ROUNDS=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
work=$(mktemp -d /tmp/pqshim-nothread.XXXXXX)
# shellcheck source-path=SCRIPTDIR source=../integration/pgbed.sh
. "$root/tests/integration/pgbed.sh"
trap 'pgbed_stop >/dev/null 2>&1; rm -rf "$work"' EXIT

echo "[bench] building $BASE in $work/base" >&2
mkdir "$work/base"
git -C "$root" archive "$BASE" | tar -x -C "$work/base"
make -C "$work/base" -j2 build/libpqshim.so >"$work/base.log" 2>&1 ||
	{ echo "nothread.sh: $BASE does not build: $(tail -5 "$work/base.log")" >&2; exit 1; }
before=$work/base/build/libpqshim.so after=$root/build/libpqshim.so
pgbed_start >"$work/bed.log" 2>&1 || { echo "nothread.sh: no servers" >&2; exit 1; }
"$PGBENCH" -i -s 1 -q >/dev/null 2>&1
printf '[tracking]\ncross_thread = warn\n' >"$work/track.ini"
printf '[read_only]\nflag_file = %s/never.flag\nprimary = port=%s\nreplica = port=%s\n' \
	"$work" "$PQT_PRIMARY_PORT" "$PQT_REPLICA_PORT" >"$work/ro.ini"

echo "\`tests/bench/nothread.sh $BASE $N $ROUNDS\`: *before* is $BASE's library, *after* this one's;"
echo "*read-only-off*: \`[read_only]\` with \`primary\`, \`replica\` and a \`flag_file\` that does not exist."
echo
export OVERHEAD_CONTENDERS="tracking-only-before=$work/track.ini@$before \
read-only-off-before=$work/ro.ini@$before tracking-only-after=$work/track.ini \
read-only-off-after=$work/ro.ini"
bash "$here/overhead.sh" "$N" simple "$ROUNDS"
echo
bash "$here/overhead.sh" "$N" prepared "$ROUNDS"
echo
bash "$here/overhead.sh" $((N / 4)) simple "$ROUNDS" 4
echo

# calls and self instructions per function, from a callgrind file: "name calls self"
per_function() {
	python3 - "$1" <<'EOF'
import collections, re, sys
names, self_, calls = {}, collections.Counter(), collections.Counter()
fn = cfn = None
after_call = False
def name(s):
    m = re.match(r'\((\d+)\)(?:\s+(.*))?', s)
    if not m:
        return s
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), m.group(1))
for line in open(sys.argv[1]):
    if line.startswith('fn='):
        fn = name(line[3:].strip())
    elif line.startswith('cfn='):
        cfn = name(line[4:].strip())
    elif line.startswith('calls='):
        calls[cfn] += int(line[6:].split()[0])
        after_call = True
    elif line[:1].isdigit() or line[:1] in '+-*':
        parts = line.split()
        if len(parts) >= 2:
            if after_call:
                after_call = False       # the call's inclusive cost
            else:
                self_[fn] += int(parts[1])
for f in ('send', 'recv', 'ppoll', '__pthread_enable_asynccancel', '__pthread_disable_asynccancel'):
    print(f, calls[f], self_[f])
EOF
}
cg() { # LIB POLICY N: per_function of one pgbench run
	env LD_PRELOAD="$1" PQSHIM_POLICY="$2" valgrind --tool=callgrind \
		--callgrind-out-file="$work/cg" "$PGBENCH" -n -S -c 1 -j 1 -t "$3" >/dev/null 2>&1
	per_function "$work/cg"
}
echo "glibc's cancellable calls per \`pgbench -S\` transaction (one run of $N and one of $((2 * N)); calls vary"
echo "with pgbench's polling, instructions per call do not):"
echo
echo "| contender | send: calls, instr/call | recv | ppoll | asynccancel pair: calls, instructions |"
echo "|---|---:|---:|---:|---:|"
for c in "tracking-only-before $before track" "read-only-off-before $before ro" \
	"tracking-only-after $after track" "read-only-off-after $after ro"; do
	read -r name lib pol <<<"$c"
	cg "$lib" "$work/$pol.ini" "$N" >"$work/a"
	cg "$lib" "$work/$pol.ini" $((2 * N)) >"$work/b"
	paste "$work/a" "$work/b" | awk -v n="$N" -v name="$name" '
		{ dc = ($5 - $2) / n; ds = ($6 - $3) / n
		  cell[NR] = dc > 0 ? sprintf("%.2f, %.1f", dc, ds / dc) : "0"
		  if (NR == 4) pc = dc; if (NR >= 4) pi += ds }
		END { printf "| %s | %s | %s | %s | %.2f, %.0f |\n", name, cell[1], cell[2], cell[3], pc, pi }'
done
