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

client_ro_table

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
# moves KEY WHY [KEY WHY]...: each counter KEY passes the value it has now
# within 5 s (else fail: WHY)
moves() {
	local -a base=()
	local i args=("$@")
	for ((i = 0; i < ${#args[@]}; i += 2)); do base+=("$(field "${args[i]}")"); done
	for ((i = 0; i < ${#args[@]}; i += 2)); do
		wait_until 5 more "${args[i]}" "${base[i / 2]}" || fail "${args[i + 1]}: $(state)"
	done
}
# switched WHERE WRITES WHY: the flag just changed: the first read from WHERE
# within a second (plus a report period), then the counters WRITES and
# fresh_WHERE move
switched() {
	local t0=${EPOCHREALTIME/./} took
	moves "read_$1" "reads never reached the $1"
	took=$(ms_since "$t0")
	note "first read from the $1 ${took} ms after the flag changed"
	assert_le "$took" 2000 "reads on the $1 within a second (plus a report period)"
	moves "$2" "$3" "fresh_$1" "new async connects never went to the $1"
}
# settled WHERE OTHER WRITES WHEN: within 6 s the primary or replica OTHER
# shows none of the program's connections and WHERE its reader and writer;
# a few more rounds, all on WHERE: no read and no new connect on OTHER, the
# counter WRITES unchanged, no error
settled() {
	local where=$1 other=$2 writes=$3 when=$4 ro fo wk r1
	nothing_on_other() { [ "$("on_$other")" = 0 ]; }
	wait_until 6 nothing_on_other ||
		fail "connections left on the $other: $(server_activity "$APP" "pid, state, query" "$other"); $(state)"
	assert_eq "$("on_$where")" 2 "the reader and writer on the $where"
	ro=$(field "read_$other") fo=$(field "fresh_$other") wk=$(field "$writes") r1=$(field "read_$where")
	wait_until 5 more "read_$where" "$((r1 + 20))" || fail "reads stalled on the $where: $(state)"
	assert_eq "$(field "read_$other")" "$ro" "no read on the $other $when"
	assert_eq "$(field "fresh_$other")" "$fo" "no new connect on the $other $when"
	assert_eq "$(field "$writes")" "$wk" "$writes unchanged $when"
	no_errors "$when"
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
switched replica writes_refused "writes not refused"
settled replica primary writes_ok "while read-only"
S=$(stat_json "$POL")
assert_eq "$(jq -c '[.connections[] | select(.target == "primary")] | length' <<<"$S")" 0 \
	"stat: nothing on the primary"
assert_ge "$(jq .totals.migrations <<<"$S")" 2 "stat: the reader and writer migrated"
assert_ge "$(jq .totals.redirects <<<"$S")" 3 "stat: migrations and fresh connects redirected"

# --- read-only off -------------------------------------------------------------
rm -f "$FLAG"
switched primary writes_ok "writes did not come back"
settled primary replica writes_refused "after the flag went"

held_end client 0
no_errors "at the end"
assert_eq "$(jqp "$POL" .totals.leaked)" 0 "nothing leaked"
gone() {
	[ "$(on_primary)" = 0 ] && [ "$(on_replica)" = 0 ] &&
		[ "$(server_backends "$APP-fresh")" = 0 ] && [ "$(server_backends "$APP-fresh" replica)" = 0 ]
}
wait_until 5 gone || fail "backends left after the program exited"
echo "ok: asynchronous psycopg2 moved to the replica and back without a failed read"
