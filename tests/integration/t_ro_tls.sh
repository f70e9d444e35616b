#!/usr/bin/env bash
# t_ro_tls.sh: a TLS connection moves to the replica and back (on_switch =
# migrate), with no error seen by the program. Runs its own bed with TLS on
# 127.0.0.1 (pgbed.sh, PQT_BED_TLS=1). psycopg2 connects with sslmode=require
# (tests/clients/py_tls_ro.py); after each switch its statements run on the
# other server, the server shows TLS on the new backend (pg_stat_ssl), and
# 200 statements and a 1 MB result go through the moved TLS stream.
set -euo pipefail
# its own bed: the shared one listens on Unix sockets only
unset PQT_SOCKDIR PQT_PGTMP PQT_PRIMARY_PORT PQT_REPLICA_PORT PGHOST PGPORT PGUSER PGDATABASE
export PQT_BED_TLS=1
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

FLAG=$T/read-only.flag
APP=t_ro_tls
POL=$(RO_HOST=127.0.0.1 ro_policy tls "$T/shim.log")

client_start py_tls_ro.py "$PY" "$PQT_ROOT/tests/clients/py_tls_ro.py" \
	"host=127.0.0.1 port=$PQT_PRIMARY_PORT user=postgres dbname=pqt sslmode=require application_name=$APP"

line() { grep "\"step\": \"$1\"" "$T/out"; }
# step NAME EXPECTED: the client's step NAME reads EXPECTED (recovery ssl ok)
step() {
	held_send client "$1"
	wait_until 10 line "$1" || fail "no step $1: $(cat "$T/out" "$T/err")"
	local l
	l=$(line "$1")
	note "$1: $l"
	assert_eq "$(jq -r '.error // "none"' <<<"$l")" none "$1: no error"
	assert_eq "$(jq -r '"\(.recovery) \(.ssl) \(.ok)"' <<<"$l")" "$2" "$1: in recovery, TLS, statements ok"
	BACKEND=$(jq -r .backend <<<"$l")
}
assert_eq "$(line start | jq -r '"\(.recovery) \(.ssl) \(.ok)"')" "false true true" \
	"start: on the primary over TLS"

touch "$FLAG"
wait_until 5 ro_noticed "$T/shim.log" on || fail "the client never noticed the flag: $(cat "$T/shim.log")"
step replica "true true true"
assert_eq "$(sql_replica "select ssl from pg_stat_ssl join pg_stat_activity using (pid)
	where pid = $BACKEND and application_name = '$APP'")" t "replica: the moved backend uses TLS"
assert_eq "$(server_backends "$APP")" 0 "nothing left on the primary"

rm -f "$FLAG"
wait_until 5 ro_noticed "$T/shim.log" off || fail "the client never noticed the flag go: $(cat "$T/shim.log")"
step primary "false true true"
assert_eq "$(sql_primary "select ssl from pg_stat_ssl join pg_stat_activity using (pid)
	where pid = $BACKEND and application_name = '$APP'")" t "primary: the moved-back backend uses TLS"
assert_eq "$(server_backends "$APP" replica)" 0 "nothing left on the replica"
assert_eq "$(jqp "$POL" '"\(.totals.migrations) \(.totals.refused)"')" "2 0" "totals: migrations refused"

held_end client 0
echo "ok: a TLS connection moved to the replica and back, no error"
