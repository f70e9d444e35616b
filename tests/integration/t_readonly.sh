#!/usr/bin/env bash
# t_readonly.sh - the read-only switch with a flag file, on a threaded
# psycopg2 service that never stops reading and writing: within a second of
# the flag appearing new reads come from the replica with no failed read,
# writes fail with 25006, and the primary shows none of the service's
# connections (the idle one included) within drain_timeout; when the flag
# goes, everything returns to the primary and writes succeed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

client_ro_table

FLAG=$T/read-only.flag
POL=$(ro_policy ro "$T/shim.log" "drain_timeout = 5s")

client_start py_readonly.py "$PY" "$PQT_ROOT/tests/clients/py_readonly.py" --app t_ro

last() { tail -n 1 "$T/out"; }
field() { last | jq -r ".$1"; }
primary_backends() { server_backends t_ro; }
replica_backends() { server_backends t_ro replica; }

wait_until 5 sh -c "[ \$(tail -n1 $T/out | jq .read_primary) -gt 20 ]" || fail "no reads on the primary: $(last)"
assert_eq "$(primary_backends)" 5 "the service's 5 connections on the primary"
assert_eq "$(jqp "$POL" '[.connections[] | select(.target == "primary")] | length')" 5 "targets before"

# --- read-only on ----------------------------------------------------------
touch "$FLAG"
start=$(date +%s.%N)
r0=$(field read_replica)
wait_until 3 sh -c "[ \$(tail -n1 $T/out | jq .read_replica) -gt $r0 ]" || fail "reads never reached the replica: $(last)"
took=$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN { printf \"%.3f\", a - b }")
note "first read from the replica after ${took}s"
assert_le "$took" 1.5 "reads move within a second (plus a report period)"
w0=$(field writes_refused)
wait_until 3 sh -c "[ \$(tail -n1 $T/out | jq .writes_refused) -gt $w0 ]" || fail "writes not refused: $(last)"
none_on_primary() { [ "$(primary_backends)" = 0 ]; }
wait_until 8 none_on_primary ||
	fail "connections left on the primary: $(server_activity t_ro "pid, state, query"); stat: $(stat_json "$POL" | jq -c "[.connections[] | {tid, target, state, backend_pid, queries}]"); shim log: $(grep -v ended "$T/shim.log")"
# The four busy connections moved at their next statement; the idle one,
# never used, had its backend ended (it moves when next used, see the end).
assert_eq "$(replica_backends)" 4 "the 4 busy connections on the replica"
assert_eq "$(field read_errors)" 0 "no failed read: $(field last_error)"
assert_eq "$(field other_errors)" 0 "no other error: $(field last_error)"
S=$(stat_json "$POL")
assert_eq "$(jq '[.connections[] | select(.target == "replica")] | length' <<<"$S")" 4 "targets while read-only"
assert_eq "$(jq -c '[.connections[] | select(.target == "primary") | [.status, .backend_pid]]' <<<"$S")" '[["bad",0]]' "the idle one: ended, not on the primary"
assert_ge "$(jq .totals.migrations <<<"$S")" 3 "migrations counted"

# --- read-only off -----------------------------------------------------------
rm -f "$FLAG"
p0=$(field read_primary) w1=$(field writes_ok)
wait_until 3 sh -c "[ \$(tail -n1 $T/out | jq .read_primary) -gt $p0 ]" || fail "reads never came back: $(last)"
wait_until 3 sh -c "[ \$(tail -n1 $T/out | jq .writes_ok) -gt $w1 ]" || fail "writes did not come back: $(last)"
none_on_replica() { [ "$(replica_backends)" = 0 ]; }
wait_until 8 none_on_replica || fail "connections left on the replica"
assert_eq "$(primary_backends)" 4 "the busy ones back on the primary"
assert_eq "$(field read_errors)" 0 "still no failed read: $(field last_error)"
assert_eq "$(field other_errors)" 0 "still no other error: $(field last_error)"

# The idle connection, used again at the end, works: it reconnects where
# the policy says (the primary now) without the program seeing anything.
held_end client "" 10
assert_eq "$(field read_errors)" 0 "the idle connection's late read worked: $(field last_error)"
S=$(stat_json "$POL")
assert_eq "$(jq .totals.leaked <<<"$S")" 0 "nothing leaked"
assert_ge "$(jq .totals.redirects <<<"$S")" 4 "redirects counted"
