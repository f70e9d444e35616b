#!/usr/bin/env bash
# t_ro_async.sh: the read-only switch on an asynchronous psycopg2 program
# (tests/clients/py_async_ro.py: connect(async_=1), PQsendQuery, a poll
# loop with select). The flag file appears: within a second or so its reads
# come from the replica with no failed read, its writes fail with 25006, new
# asynchronous connects land on the replica, and the primary shows none of
# its connections; the flag goes: reads, writes and new connects come back
# to the primary and the replica shows none of its connections. (The
# short-lived connections are named APP-fresh: the server's count for APP is
# the two long-lived ones.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

sql_primary "create table if not exists ro_t (at timestamptz)"
replica_catch_up 10 "table ro_t"

FLAG=$T/read-only.flag
APP=t_ro_async
POL=$(ro_policy async "$T/shim.log" "drain_timeout = 5s")

client_start py_async_ro.py "$PY" "$PQT_ROOT/tests/clients/py_async_ro.py" --app "$APP"

last() { tail -n 1 "$T/out"; }
field() { last | jq -r ".$1"; }
# more KEY N: the counter KEY has passed N in the latest report
more() { [ "$(field "$1")" -gt "$2" ]; }
on_primary() { server_backends "$APP"; }
on_replica() { server_backends "$APP" replica; }
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }
state() {
	echo "last report: $(last); stderr: $(tail -3 "$T/err"); stat: $(stat_json "$POL" |
		jq -c '[.connections[] | {target, state, status, backend_pid}]')"
}
no_errors() {
	assert_eq "$(field read_errors)" 0 "$1: no failed read ($(field last_error))"
	assert_eq "$(field other_errors)" 0 "$1: no other error ($(field last_error))"
}

wait_until 5 more read_primary 20 || fail "no reads on the primary: $(state)"
wait_until 5 more fresh_primary 1 || fail "no fresh connects on the primary: $(state)"
wait_until 5 more writes_ok 10 || fail "no writes on the primary: $(state)"
assert_eq "$(on_primary)" 2 "the reader and writer on the primary"
assert_eq "$(on_replica)" 0 "nothing on the replica before the flag"
assert_eq "$(field read_replica)" 0 "no read on the replica before the flag"
assert_eq "$(field writes_refused)" 0 "no write refused before the flag"
no_errors "before the flag"

# --- read-only on -----------------------------------------------------------
touch "$FLAG"
t0=${EPOCHREALTIME/./}
r0=$(field read_replica)
wait_until 5 more read_replica "$r0" || fail "reads never reached the replica: $(state)"
took=$(ms_since "$t0")
note "first read from the replica ${took} ms after the flag"
assert_le "$took" 2000 "reads move within a second (plus a report period)"
w0=$(field writes_refused) f0=$(field fresh_replica)
wait_until 5 more writes_refused "$w0" || fail "writes not refused: $(state)"
wait_until 5 more fresh_replica "$f0" || fail "new async connects never went to the replica: $(state)"
none_on_primary() { [ "$(on_primary)" = 0 ]; }
wait_until 6 none_on_primary || fail "connections left on the primary: $(server_activity "$APP" "pid, state, query"); $(state)"
assert_eq "$(on_replica)" 2 "the reader and writer on the replica"
# A few more rounds, all on the replica.
rp=$(field read_primary) r1=$(field read_replica) fp=$(field fresh_primary) wk=$(field writes_ok)
wait_until 5 more read_replica "$((r1 + 20))" || fail "reads stalled on the replica: $(state)"
assert_eq "$(field read_primary)" "$rp" "no read on the primary while read-only"
assert_eq "$(field fresh_primary)" "$fp" "no new connect on the primary while read-only"
assert_eq "$(field writes_ok)" "$wk" "no write accepted while read-only"
no_errors "while read-only"
S=$(stat_json "$POL")
assert_eq "$(jq -c '[.connections[] | select(.target == "primary")] | length' <<<"$S")" 0 \
	"stat: nothing on the primary"
assert_ge "$(jq .totals.migrations <<<"$S")" 2 "stat: the reader and writer migrated"
assert_ge "$(jq .totals.redirects <<<"$S")" 3 "stat: migrations and fresh connects redirected"

# --- read-only off -------------------------------------------------------------
rm -f "$FLAG"
t0=${EPOCHREALTIME/./}
p0=$(field read_primary)
wait_until 5 more read_primary "$p0" || fail "reads never came back to the primary: $(state)"
took=$(ms_since "$t0")
note "first read back on the primary ${took} ms after the flag went"
assert_le "$took" 2000 "reads come back within a second (plus a report period)"
w1=$(field writes_ok) f1=$(field fresh_primary)
wait_until 5 more writes_ok "$w1" || fail "writes did not come back: $(state)"
wait_until 5 more fresh_primary "$f1" || fail "new async connects did not come back: $(state)"
none_on_replica() { [ "$(on_replica)" = 0 ]; }
wait_until 6 none_on_replica || fail "connections left on the replica: $(state)"
assert_eq "$(on_primary)" 2 "the reader and writer back on the primary"
rr=$(field read_replica) fr=$(field fresh_replica) wr=$(field writes_refused) p1=$(field read_primary)
wait_until 5 more read_primary "$((p1 + 20))" || fail "reads stalled on the primary: $(state)"
assert_eq "$(field read_replica)" "$rr" "no read on the replica after the flag went"
assert_eq "$(field fresh_replica)" "$fr" "no new connect on the replica after the flag went"
assert_eq "$(field writes_refused)" "$wr" "no write refused after the flag went"
no_errors "after the flag went"

held_end client 0
no_errors "at the end"
assert_eq "$(jqp "$POL" .totals.leaked)" 0 "nothing leaked"
gone() {
	[ "$(on_primary)" = 0 ] && [ "$(on_replica)" = 0 ] &&
		[ "$(server_backends "$APP-fresh")" = 0 ] && [ "$(server_backends "$APP-fresh" replica)" = 0 ]
}
wait_until 5 gone || fail "backends left after the program exited"
echo "ok: asynchronous psycopg2 moved to the replica and back without a failed read"
