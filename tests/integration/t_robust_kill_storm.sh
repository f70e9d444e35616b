#!/usr/bin/env bash
# t_robust_kill_storm.sh - a storm of kill -9 on clients under a cap never
# stalls the cap and never stretches a wait past wait_timeout.
#  - max_active = 3, wait_timeout = 2s; six psycopg2 clients of two threads
#    each loop on `select pg_sleep(0.01)` (tests/clients/py_robust.py storm:
#    each statement's request time and the server's start and end times
#    logged); 60 times, every 0.1-0.25 s, a random client is killed with
#    kill -9 (holding a slot, waiting, or between statements) and restarted.
#  - a monitor outside the shim samples pg_stat_activity every 20 ms.
#  - asserted from those logs: no stretch longer than 1 s with nothing busy
#    on the server while a statement waited; no statement got its slot
#    later than wait_timeout + 50 ms after it asked; every wait that failed
#    failed with 53300 by wait_timeout (+ 0.5 s of scheduling); afterwards
#    stat shows nothing active or waiting and the server nothing busy.
#  Before the fix, an audit after a reap held the cap's mutex while it
#  waited (up to ~1 s per hold) for releasers blocked on that very mutex.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
POL=$(policy_new storm "[cap]
max_active = 3
wait_timeout = 2s
")
mkdir "$T/logs"
env -u LD_PRELOAD -u PQSHIM_POLICY "$PY" "$ROB" monitor --prefix t_robust_storm \
	--out "$T/samples" --stop-file "$T/stop" >"$T/monitor.out" 2>"$T/monitor.err" &
bg_track $!
MON=$!
wait_until 10 grep -qx READY "$T/monitor.out" || fail "monitor: $(cat "$T/monitor.err")"

n=0
declare -a cl
start_client() { # SLOT
	n=$((n + 1))
	"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" storm --app "t_robust_storm_$n" \
		--log "$T/logs/c$n.log" --threads 2 --sleep 0.01 >"$T/c$n.out" 2>"$T/c$n.err" &
	cl[$1]=$!
	bg_track $!
}
for i in 0 1 2 3 4 5; do start_client $i; done
sleep 1
for ((k = 0; k < 60; k++)); do
	sleep "0.$((10 + RANDOM % 16))"
	j=$((RANDOM % 6))
	kill -9 "${cl[$j]}" 2>/dev/null || true
	wait "${cl[$j]}" 2>/dev/null || true
	start_client "$j"
done
sleep 1
for j in 0 1 2 3 4 5; do kill -9 "${cl[$j]}" 2>/dev/null || true; wait "${cl[$j]}" 2>/dev/null || true; done
touch "$T/stop"
wait "$MON" || fail "monitor failed: $(cat "$T/monitor.err")"
A=$("$PY" "$ROB" analyze --logs "$T/logs/*.log" --samples "$T/samples" --timeout 2 --cap 3)
note "storm: $A"
assert_ge "$(jq .ok <<<"$A")" 500 "statements that ran"
assert_le "$(jq .stall_max <<<"$A")" 1.0 "longest stretch (s) with nothing busy while work waited"
assert_eq "$(jq .wait_ok_over_timeout <<<"$A")" 0 "statements that got their slot after wait_timeout + 50 ms (longest wait $(jq .wait_ok_max <<<"$A") s)"
assert_eq "$(jq -r '.failed_by_sqlstate | keys - ["53300"] | join(",")' <<<"$A")" "" "failures other than 53300"
if [ "$(jq .timeouts <<<"$A")" != 0 ]; then
	assert_le "$(jq .timeout_wait_max <<<"$A")" 2.5 "longest wait that ended in 53300"
	assert_ge "$(jq .timeout_wait_min <<<"$A")" 1.95 "shortest wait that ended in 53300"
fi
settled() { [ "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" = "0 0" ]; }
wait_until 3 settled || fail "stat after the storm: $(jqp "$POL" .cap)"
assert_eq "$(jqp "$POL" '[.processes[], .connections[]] | length')" 0 "records left after the storm"
