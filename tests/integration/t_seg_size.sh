#!/usr/bin/env bash
# t_seg_size.sh: [shim] max_processes and max_tracked size the segment.
#  - 700 processes tracked at once with max_processes = 1024: each one
#    (tests/clients/c_seg_hold.c) connects, writes its pid into a table on
#    the server, disconnects, and stays alive holding no server connection
#    (the bed's server allows 200; `max_connections = 40` in the policy
#    queues the connects). A process is tracked from its first libpq call
#    to its exit: `pqshim stat` must list exactly the 700 pids the server
#    recorded, and none once they have exited.
#  - a full process table (max_processes = 8, a 9th process) and a full
#    connection table (max_tracked = 4, a 5th connection) refuse under
#    fail-closed, naming the key to raise.
#  - a policy asking for other sizes than the segment was made with: the
#    program works, told which sizes are in force; nothing is corrupted.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
# shellcheck source-path=SCRIPTDIR source=seg_hold.sh
. "$(dirname "$0")/seg_hold.sh"
sql_primary "drop table if exists seg_seen; create table seg_seen(pid int)" >/dev/null

N=700
POL=$(policy_new size "max_processes = 1024
[cap]
max_connections = 40
wait_timeout = 60s
")
seg=$(sed -n 's/^segment = //p' "$POL")
mkfifo "$T/hold.fifo"
exec 9<>"$T/hold.fifo" # the one writer: closing it lets every holder exit
pids=()
for i in $(seq 1 $N); do
	LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL PGAPPNAME=t_seg_size \
		"$T/hold" hold <"$T/hold.fifo" >"$T/h.$i" 2>&1 9>&- &
	pids+=("$!")
	bg_track "$!"
done
seen() { [ "$(sql_primary "select count(*) from seg_seen")" -ge $N ]; }
wait_until 100 seen || fail "the server saw $(sql_primary "select count(*) from seg_seen") of $N"
ready=$(cat "$T"/h.* | grep -c '^READY$' || true)
assert_eq "$ready" $N "every holder connected and holds on"
S=$(stat_json "$POL")
assert_eq "$(jq '.processes | length' <<<"$S")" $N "stat tracks all $N processes"
jq -r '.processes[].pid' <<<"$S" | sort -n >"$T/stat.pids"
sql_primary "select pid from seg_seen order by pid" >"$T/server.pids"
printf '%s\n' "${pids[@]}" | sort -n >"$T/our.pids"
cmp -s "$T/stat.pids" "$T/server.pids" || fail "stat's pids are not the server's: $(diff "$T/stat.pids" "$T/server.pids" | head -5)"
cmp -s "$T/server.pids" "$T/our.pids" || fail "the server's pids are not ours"
assert_eq "$(jq '.connections | length' <<<"$S")" 0 "none holds a connection meanwhile"
assert_eq "$(jq .totals.connects <<<"$S")" $N "connects counted"

# The same segment under a policy asking for the default sizes: it works,
# and says which sizes are in force.
OTHER=$T/other.ini
printf '[shim]\nsegment = %s\nmax_processes = 512\n' "$seg" >"$OTHER"
chmod 600 "$OTHER"
out=$(LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$OTHER "$PSQL" -X -At -c 'select 42' 2>&1)
assert_match "$out" '42' "a policy with other sizes still works"
assert_match "$out" "was made with max_processes = 1024, max_tracked = 4096; the policy says 512, 4096" \
	"... and is told which sizes are in force"

exec 9>&-
for p in "${pids[@]}"; do wait "$p" || fail "a holder failed"; done
S=$(stat_json "$POL")
assert_eq "$(jq '.processes | length' <<<"$S")" 0 "no process left once they exited"
assert_eq "$(jq .totals.closes <<<"$S")" $((N + 1)) "closes counted, each once"

# --- a full process table: the 9th of max_processes = 8 -----------------------
SMALL=$(policy_new small "max_processes = 8
[cap]
max_active = 2
")
mkfifo "$T/small.fifo"
exec 9<>"$T/small.fifo"
sql_primary "truncate seg_seen" >/dev/null
for i in $(seq 1 8); do
	LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$SMALL "$T/hold" hold <"$T/small.fifo" >"$T/s.$i" 2>&1 9>&- &
	bg_track "$!"
done
eight() { [ "$(sql_primary "select count(*) from seg_seen")" -ge 8 ]; }
wait_until 30 eight || fail "the 8 holders did not all connect"
set +e
out=$(LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$SMALL "$PSQL" -X -At -c 'insert into seg_seen values (-1)' 2>&1)
rc=$?
set -e
assert_eq "$rc" 2 "the 9th process cannot connect"
assert_match "$out" 'pqshim: connection refused: segment pqt-[0-9a-f]* has no free process record \(max_processes = 8\): raise \[shim\] max_processes' \
	"the refusal names the key to raise"
assert_eq "$(sql_primary "select count(*) from seg_seen where pid = -1")" 0 "nothing of it ran"
exec 9>&-

# --- a full connection table: the 5th of max_tracked = 4 ----------------------
TINY=$(policy_new tiny "max_tracked = 4
[cap]
max_active = 2
")
out=$(LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$TINY "$T/hold" conns 5 </dev/null 2>&1)
assert_eq "$(grep -c '^conn [1-4] ok$' <<<"$out")" 4 "4 connections recorded: $out"
assert_match "$out" 'conn 5 refused: pqshim: connection refused: segment pqt-[0-9a-f]* has no free connection record \(max_tracked = 4\): raise \[shim\] max_tracked' \
	"the 5th is refused, naming the key"
