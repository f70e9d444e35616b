#!/usr/bin/env bash
# t_robust_unsettled_start.sh - a process that starts while the policy file
# is being changed does not set the shared cap from what it read.
#  - a psycopg2 storm (4 threads, 50 ms statements) runs under max_active = 1,
#    a monitor outside the shim counts its busy backends on the server.
#  - the policy is replaced (rename) by one with max_active = 5, a process
#    starts under the shim 0.1 s later (it reads the new file, changed less
#    than 500 ms before), and 0.3 s after the first rename the policy is put
#    back to max_active = 1: the file never stayed at 5 for 500 ms, so 5 must
#    never take effect.
#  - pqshim stat, read every 50 ms, never shows max_active 5; on the server
#    never more than 1 of the storm's statements at once (strict count: busy
#    together since before the sample began).
#  Before the change, the starting process set max_active = 5 on the segment
#  at once, and nothing set it back (the file settled on the policy the storm
#  already had): 4 at once on the server.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
APP=t_robust_unsettled
POL=$(policy_new unsettled "[cap]
max_active = 1
wait_timeout = 10s
")
seg=$(sed -n 's/^segment = //p' "$POL")
put() { # CAP: replace the policy by rename, as an editor does
	printf '[shim]\nsegment = %s\n[cap]\nmax_active = %s\nwait_timeout = 10s\n' "$seg" "$1" >"$POL.new"
	chmod 0600 "$POL.new"
	mv "$POL.new" "$POL"
}
sleep 0.6      # the file settles before anyone starts
env -u LD_PRELOAD -u PQSHIM_POLICY "$PY" "$ROB" monitor --prefix "$APP" --out "$T/samples" \
	--stop-file "$T/stop" >"$T/monitor.out" 2>"$T/monitor.err" &
bg_track $!
wait_until 10 grep -q READY "$T/monitor.out" || fail "monitor: $(cat "$T/monitor.err")"
"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" storm --app "$APP" --log "$T/storm.log" --threads 4 \
	--sleep 0.05 --seconds 5 >"$T/storm.out" 2>"$T/storm.err" &
S=$!
bg_track $S
wait_until 10 grep -q READY "$T/storm.out" || fail "storm: $(cat "$T/storm.err")"
( while [ ! -e "$T/stop" ]; do
	"$PQSHIM" stat -p "$POL" --json 2>/dev/null | jq -r '.cap.max_active' || true
	sleep 0.05
done >"$T/max.log" ) &
bg_track $!
sleep 1
put 5
sleep 0.1
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL /usr/lib/postgresql/15/bin/pg_isready -q ||
	fail "pg_isready under the shim"
sleep 0.2
put 1
wait $S || fail "storm: $(cat "$T/storm.err")"
touch "$T/stop"
sleep 0.2
note "max_active seen: $(sort -n "$T/max.log" | uniq -c | tr -s ' \n' ' ')"
assert_eq "$(grep -c '^5$' "$T/max.log" || true)" 0 "stat looks that showed max_active = 5"
assert_ge "$(grep -c '^1$' "$T/max.log")" 20 "stat looks that showed max_active = 1"
assert_ge "$(grep -c '^OK' "$T/storm.log")" 20 "the storm's statements"
peak=$(awk '$1 == "S" { if ($4 > m) m = $4 } END { print m + 0 }' "$T/samples")
note "server: at most $peak busy together (strict), $(grep -c '^S' "$T/samples") samples"
assert_le "$peak" 1 "server: the storm's statements at once (max_active = 1)"
