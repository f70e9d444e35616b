#!/usr/bin/env bash
# t_ro_transaction.sh: a connection inside an explicit transaction when the
# flag file appears (psql sessions held open on a fifo, as in t_psql.sh).
#  - in_transaction = keep (drain_timeout = 2s): the transaction stays on the
#    primary, past drain_timeout, its statements still run there and its
#    COMMIT succeeds (the rows are on the primary); the session's next
#    statement runs on the replica and the primary shows none of its
#    connections;
#  - in_transaction = terminate (drain_timeout = 2s): the transaction is left
#    alone until drain_timeout, then the server ends it (the primary shows
#    none of the session's connections); the session's next statement fails
#    and nothing of the transaction was committed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

sql_primary "create table if not exists ro_tx (i int); truncate ro_tx"
replica_catch_up 10 "table ro_tx"
sql_replica "select 1 from ro_tx limit 0" >/dev/null || fail "no table ro_tx on the replica"

FLAG=$T/read-only.flag
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }
# policy NAME IN_TRANSACTION
policy() {
	ro_policy "$1" "$T/$1.log" "in_transaction = $2
drain_timeout = 2s"
}
# start_psql NAME APP POLICY: a psql session held open (held NAME).
start_psql() { PGAPPNAME=$2 psql_hold "$1" "$3"; }
# send NAME LINE...: feed psql and wait until it has run everything sent.
send() { psql_feed "$@"; }
on_primary() { server_backends "$1"; }
on_replica() { server_backends "$1" replica; }
backends() { # APP PRIMARY REPLICA
	[ "$(on_primary "$1")" = "$2" ] && [ "$(on_replica "$1")" = "$3" ]
}
noticed() { ro_noticed "$1" on; }

# --- in_transaction = keep --------------------------------------------------
POL=$(policy keep keep)
APP=t_ro_tx_keep
start_psql keep "$APP" "$POL"
send keep "begin;" "insert into ro_tx values (1);" "select pg_is_in_recovery();"
assert_eq "$(cat "$T/keep.out")" f "keep: the transaction runs on the primary"
assert_eq "$(server_activity "$APP" state)" \
	"idle in transaction" "keep: the server's view before the flag"

touch "$FLAG"
t0=${EPOCHREALTIME/./}
wait_until 5 noticed "$T/keep.log" || fail "keep: psql did not notice the flag: $(cat "$T/keep.log")"
# Past the shim's clean-up of idle connections (1 s) and past drain_timeout
# (2 s): a transaction is kept all the same.
sleep 3
note "keep: $(ms_since "$t0") ms after the flag"
assert_eq "$(server_activity "$APP" state)" \
	"idle in transaction" "keep: the transaction still on the primary after drain_timeout"
assert_eq "$(on_replica "$APP")" 0 "keep: nothing on the replica during the transaction"
assert_eq "$(jqp "$POL" '[.connections[] | [.target, .state, .status]]' | jq -c .)" \
	'[["primary","in_transaction","ok"]]' "keep: stat during the transaction"
send keep "insert into ro_tx values (2);" "select pg_is_in_recovery();"
assert_eq "$(tail -n 1 "$T/keep.out")" f "keep: statements inside the transaction still run on the primary"
send keep "commit;"
assert_eq "$(sql_primary "select string_agg(i::text, ',' order by i) from ro_tx")" "1,2" \
	"keep: the commit succeeded on the primary"
send keep "select pg_is_in_recovery();"
assert_eq "$(tail -n 1 "$T/keep.out")" t "keep: the statement after the commit runs on the replica"
wait_until 5 backends "$APP" 0 1 || fail "keep: after the commit, expected 0 on the primary and 1 on the replica, got $(on_primary "$APP") and $(on_replica "$APP")"
assert_eq "$(jqp "$POL" '[.connections[] | [.target, .state, .status]]' | jq -c .)" \
	'[["replica","idle","ok"]]' "keep: stat after the commit"
# Writes are now refused by the server; the session goes on.
held_send keep "insert into ro_tx values (3);"
held_end keep
assert_eq "$HELD_RC" 3 "keep: psql stops on the refused write (ON_ERROR_STOP)"
assert_match "$(cat "$T/keep.err")" "cannot execute INSERT in a read-only transaction" "keep: the refused write"
assert_eq "$(cat "$T/keep.out")" $'f\nf\nt' "keep: psql's output"
rm -f "$FLAG"

# --- in_transaction = terminate ------------------------------------------------
POL=$(policy term terminate)
APP=t_ro_tx_term
start_psql term "$APP" "$POL"
send term "begin;" "insert into ro_tx values (10);" "select pg_is_in_recovery();"
assert_eq "$(cat "$T/term.out")" f "terminate: the transaction runs on the primary"
touch "$FLAG"
t0=${EPOCHREALTIME/./}
wait_until 5 noticed "$T/term.log" || fail "terminate: psql did not notice the flag: $(cat "$T/term.log")"
# Before drain_timeout (2 s from the switch, noticed after the touch), past
# the 1 s given to busy connections: the transaction is still there.
sleep 1.4
p=$(on_primary "$APP")
took=$(ms_since "$t0")
if [ "$took" -lt 1900 ]; then
	assert_eq "$p" 1 "terminate: the transaction left alone ${took} ms after the flag (before drain_timeout)"
else
	note "terminate: too slow to look before drain_timeout (${took} ms)"
fi
gone() { [ "$(on_primary "$APP")" = 0 ]; }
wait_until 8 gone || fail "terminate: the transaction still on the primary $(ms_since "$t0") ms after the flag: $(server_activity "$APP" "pid, state, query"); stat: $(stat_json "$POL" | jq -c .connections); log: $(cat "$T/term.log")"
took=$(ms_since "$t0")
note "terminate: the server ended the transaction ${took} ms after the flag"
assert_ge "$took" 1900 "terminate: not before drain_timeout"
assert_le "$took" 6000 "terminate: soon after drain_timeout"
assert_eq "$(on_replica "$APP")" 0 "terminate: nothing on the replica yet"
# The session's next statement fails: psql reports the lost connection and,
# reading a script, exits with status 2.
held_send term "select 1;"
held_end term
assert_eq "$HELD_RC" 2 "terminate: psql's exit status after its next statement (stderr: $(cat "$T/term.err"))"
assert_match "$(cat "$T/term.err")" "terminating connection due to administrator command|server closed the connection" \
	"terminate: the statement after the end of the transaction fails"
assert_eq "$(cat "$T/term.out")" f "terminate: psql's output"
assert_eq "$(sql_primary "select count(*) from ro_tx where i = 10")" 0 "terminate: nothing of the transaction committed"
assert_eq "$(on_primary "$APP")" 0 "terminate: nothing on the primary at the end"
rm -f "$FLAG"
sql_primary "drop table ro_tx"
echo "ok: in_transaction keep (moves after COMMIT) and terminate (ended after drain_timeout)"
