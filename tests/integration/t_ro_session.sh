#!/usr/bin/env bash
# t_ro_session.sh: a moved session keeps what it changed. A psycopg2 session
# sets search_path, work_mem, statement_timeout (with set_config) and SET
# ROLE (tests/clients/py_session_ro.py); its connection moves to the replica
# and back (on_switch = migrate): each time the settings, the current user
# and the table found through search_path are the same, and only
# pg_is_in_recovery() changes.  (Custom settings such as app.tenant are not
# listed by pg_settings, so they cannot be carried: README.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

sql_primary "do \$\$ begin create role pqt_app; exception when duplicate_object then null; end \$\$;
	create schema if not exists pqt_s;
	create table if not exists pqt_s.session_t (x int);
	truncate pqt_s.session_t; insert into pqt_s.session_t select generate_series(1, 3);
	grant usage on schema pqt_s to pqt_app; grant select on pqt_s.session_t to pqt_app" >/dev/null
replica_catch_up 10 "the table"
assert_eq "$(sql_replica "select count(*) from pqt_s.session_t")" 3 "the table on the replica"

FLAG=$T/read-only.flag
APP=t_ro_session
POL=$(ro_policy session "$T/shim.log")

client_start py_session_ro.py "$PY" "$PQT_ROOT/tests/clients/py_session_ro.py" --app "$APP"

line() { grep "\"step\": \"$1\"" "$T/out"; }
seen() { jq -r '"\(.error // "-") \(.search_path)|\(.work_mem)|\(.timeout)|\(.user)|\(.rows) \(.recovery)"' <<<"$(line "$1")"; }
same="- pqt_s, public|7MB|42s|pqt_app|3"
assert_eq "$(seen start)" "$same false" "start: the session's settings, on the primary"

step() { # NAME: ask the client to look again
	held_send client "$1"
	wait_until 10 line "$1" || fail "no step $1: $(cat "$T/out" "$T/err")"
	note "$1: $(line "$1")"
}
touch "$FLAG"
wait_until 5 ro_noticed "$T/shim.log" on || fail "the client never noticed the flag: $(cat "$T/shim.log")"
step replica
assert_eq "$(seen replica)" "$same true" "replica: the same settings, user and table"
assert_eq "$(server_backends "$APP")" 0 "nothing left on the primary"

rm -f "$FLAG"
wait_until 5 ro_noticed "$T/shim.log" off || fail "the client never noticed the flag go: $(cat "$T/shim.log")"
step primary
assert_eq "$(seen primary)" "$same false" "primary again: the same settings, user and table"
assert_eq "$(jqp "$POL" .totals.migrations)" 2 "totals: migrations"
! grep -q "could not carry" "$T/shim.log" || fail "shim log: $(grep 'could not carry' "$T/shim.log")"

held_end client 0
echo "ok: search_path, work_mem, statement_timeout and SET ROLE survive two moves"
