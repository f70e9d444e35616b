#!/usr/bin/env bash
# t_ro_cancel.sh: a cancel after a move reaches the new backend. psycopg2
# takes its cancel object (PQgetCancel) once, at connect; its connection
# then moves to the replica (on_switch = migrate) and connection.cancel()
# must cancel the statement running there: `select pg_sleep(5)` ends with
# QueryCanceled about 0.5 s in (tests/clients/py_cancel_ro.py), and the
# backend the replica shows for it is the one the client reported.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

FLAG=$T/read-only.flag
APP=t_ro_cancel
POL=$(ro_policy cancel "$T/shim.log")

client_start py_cancel_ro.py "$PY" "$PQT_ROOT/tests/clients/py_cancel_ro.py" --app "$APP"
assert_eq "$(server_backends "$APP")" 1 "the client on the primary"

touch "$FLAG"
# the client's own tick (its drainer thread, twice a second) has seen the flag
wait_until 5 ro_noticed "$T/shim.log" on || fail "the client never noticed the flag: $(cat "$T/shim.log")"
held_send client go
result() { grep -q '^{' "$T/out"; }
wait_until 15 result || fail "no result: $(cat "$T/out") $(cat "$T/err")"
R=$(grep '^{' "$T/out")
note "client: $R"
r() { jq -r ".$1" <<<"$R"; }
assert_eq "$(r before) $(r after)" "false true" "reads: before and after the switch"
assert_eq "$(r sleep)" canceled "how pg_sleep(5) ended after connection.cancel()"
assert_le "$(r seconds)" 2 "seconds until the cancel took effect"
assert_ge "$(r seconds)" 0.4 "seconds until the cancel took effect (the timer fires at 0.5)"
assert_eq "$(sql_replica "select count(*) from pg_stat_activity where application_name = '$APP'
	and pid = $(r backend)")" 1 "the replica's backend is the one the client reported"
assert_eq "$(server_backends "$APP")" 0 "nothing left on the primary"
assert_eq "$(jqp "$POL" .totals.migrations)" 1 "totals: migrations"
held_end client 0
echo "ok: a cancel object taken before the move cancels on the replica"
