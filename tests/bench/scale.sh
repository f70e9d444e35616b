# shellcheck shell=bash
# tests/bench/scale.sh - section 9 of `make bench` (sourced by run.sh):
# what the shim costs as the segment fills up.  Writes $work/s9.md.
#
#  - the fast path against the number of connections tracked in the
#    segment: tests/bench/fill (build/bench/fill) holds K idle connections
#    in P other processes of the segment (records claimed and filled as the
#    shim does, live pids), while overhead.sh counts the instructions
#    inside the shim per `pgbench -S` transaction under the cap;
#  - `pqshim stat` over 4,000 connections (40 processes): wall-clock time of
#    --json and of the table, the median of SCALE_STATS runs, and the
#    instructions (callgrind) of one;
#  - the reaper (cap_reap, run by a waiter every 200 ms slice, at a
#    process's start and by stat) over 1 to 400 live processes: fill times
#    200 calls.
# Knobs: SCALE_N (callgrind transactions, 1000), SCALE_STATS (20).
FILL=$root/build/bench/fill
SN=${SCALE_N:-1000} SSTATS=${SCALE_STATS:-20}

# fill_start NAME PROCS CONNS: a filler in the background, ready; its
# first output line in $work/fill.out
fill_pid=
fill_start() {
	rm -f "$work/fill.in"
	mkfifo "$work/fill.in"
	"$FILL" "$@" <"$work/fill.in" >"$work/fill.out" 2>>"$work/fill.err" &
	fill_pid=$!
	exec 7>"$work/fill.in"
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q '^ready' "$work/fill.out" 2>/dev/null && return 0
		kill -0 "$fill_pid" 2>/dev/null || break
		sleep 0.05
	done
	note "fill $* did not get ready: $(tail -n 2 "$work/fill.err" | tr '\n' ' ')"
	return 1
}
fill_stop() {
	exec 7>&-
	[ -n "$fill_pid" ] && wait "$fill_pid" 2>/dev/null
	fill_pid=
}

# wall-clock ms of COMMAND..., SSTATS runs: "median max"
wall_ms() {
	local i t0 t1
	for ((i = 0; i < SSTATS; i++)); do
		t0=$(date +%s%N)
		"$@" >/dev/null 2>&1
		t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000))
	done | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f %.1f\n", v[int((NR + 1) / 2)] / 1000, v[NR] / 1000 }'
}
# instructions of one run of COMMAND...
instr() {
	valgrind --tool=callgrind --callgrind-out-file="$work/cg.scale" "$@" >/dev/null 2>&1
	callgrind_annotate "$work/cg.scale" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
	rm -f "$work/cg.scale"
}

log "cost as the segment fills: the fast path with 0 to 3999 other connections, stat over 4000, the reaper"
seg_scale=bench-$$-scale
P_SCALE=$(pol scale "[cap]" "max_active = 1000" "max_connections = 5000")
: >"$work/scale.rows"
# the statement path: the wrappers that send or settle and their helpers
# out of line (a connect's record claim, a scan from a per-process
# starting point, varies between runs: it is not in the figure)
STMT_PATH='^(PQsend\w*|PQgetResult|PQexec\w*|settle_\w+|fast_refused|\w+_ticked|get_result_\w+)$'
for pk in "0 0" "1 99" "10 999" "100 3999"; do
	read -r fp fk <<<"$pk"
	# (a filler even for none: the segment exists before both runs)
	if ! fill_start "$seg_scale" "$((fp > 0 ? fp : 1))" "$fk"; then fill_stop; continue; fi
	s=$(BREAKDOWN_ONLY="$STMT_PATH" "$here/breakdown.sh" "$SN" simple "$P_SCALE")
	fill_stop
	echo "$((fk + 1)) $(((fp > 0 ? fp : 1) + 1)) $s" >>"$work/scale.rows"
done

seg_stat=bench-$$-stat
stat_json='- - - -' stat_table='- - - -'
if fill_start "$seg_stat" 40 4000; then
	read -r jm jx < <(wall_ms "$PQSHIM" stat -s "$seg_stat" --json)
	read -r tm tx < <(wall_ms "$PQSHIM" stat -s "$seg_stat")
	nconn=$("$PQSHIM" stat -s "$seg_stat" --json | jq '.connections | length')
	stat_json="$jm $jx $(instr "$PQSHIM" stat -s "$seg_stat" --json)"
	stat_table="$tm $tx $(instr "$PQSHIM" stat -s "$seg_stat")"
fi
fill_stop
: >"$work/reap.rows"
for fp in 1 10 100 400; do
	if fill_start "bench-$$-reap$fp" "$fp" "$((fp * 10))"; then
		awk '$1 == "reap_us" { print $4, $2, $3 }' "$work/fill.out" >>"$work/reap.rows"
	fi
	fill_stop
	rm -f "/dev/shm/pqshim.$(id -u).bench-$$-reap$fp"
done
{
	echo "### 9. Cost as the segment fills up"
	echo
	echo "The fast path against the connections tracked in the same segment: \`build/bench/fill\` holds"
	echo "K other connections (idle, in P other processes: records claimed and filled as the shim"
	echo "fills them, live pids) while \`BREAKDOWN_ONLY=... tests/bench/breakdown.sh $SN simple POLICY\`"
	echo "counts the instructions of the statement path inside the shim (the send and"
	echo "\`PQgetResult\` wrappers and their out-of-line settles: section 1's breakdown) per"
	echo "\`pgbench -S\` transaction under \`max_active = 1000\`. Left out: what the connect costs"
	echo "once (claiming a record scans the table from a per-process starting point, so it"
	echo "grows with the records in use, bounded by \`max_tracked\`), which the difference of two"
	echo "runs does not cancel when the two scans differ."
	echo
	echo "| connections in the segment | processes | statement path inside the shim, per transaction |"
	echo "|---:|---:|---:|"
	while read -r n np s; do echo "| $n | $np | $s |"; done <"$work/scale.rows"
	echo
	echo "The fast path touches the connection's own record, the thread's own table of its last"
	echo "$(sed -n 's/^#define FAST_WAYS \([0-9]*\).*/\1/p' "$root/shim/shim.h") connections and the semaphore word: nothing in it walks a table, so it"
	echo "cannot grow with the segment (a thread cycling through more than that many connections"
	echo "takes the whole path, whose look-up is a hash probe: \`map_lookup_ns\` in section 7)."
	echo
	if [ "${nconn:-0}" -gt 0 ]; then
		read -r jm jx ji <<<"$stat_json"
		read -r tm tx ti <<<"$stat_table"
		echo "\`pqshim stat\` over $nconn connections in 40 processes ($SSTATS runs each, wall-clock"
		echo "from start to exit, the process's own start-up included):"
		echo
		echo "| command | median | max | instructions (callgrind, one run) |"
		echo "|---|---:|---:|---:|"
		echo "| \`pqshim stat -s SEG --json\` | $jm ms | $jx ms | $ji |"
		echo "| \`pqshim stat -s SEG\` | $tm ms | $tx ms | $ti |"
		echo
	fi
	echo "The reaper (\`cap_reap\`: each live process record judged from /proc, nothing dead to"
	echo "free) over a segment of P live processes, 200 calls timed by \`build/bench/fill\`:"
	echo
	echo "| live processes | median | max |"
	echo "|---:|---:|---:|"
	while read -r np m x; do echo "| $np | $m µs | $x µs |"; done <"$work/reap.rows"
	echo
	echo "It runs when a process starts, in each 200 ms slice of a wait (a waiter's tick) and"
	echo "in \`pqshim stat\`, never on the statement path; its cost is one /proc look per live process"
	echo "(bounded by \`max_processes\`, 512 by default) plus, per dead process found, one pass over"
	echo "the \`max_tracked\` connection records."
	echo
} >"$work/s9.md"
rm -f "/dev/shm/pqshim.$(id -u).$seg_scale" "/dev/shm/pqshim.$(id -u).$seg_stat"
