#!/usr/bin/env bash
# t_psql.sh: psql under the shim (pqshim run). A one-shot `psql -c`, then a
# session held open on a fifo: what `pqshim stat --json` shows for it
# (connection and process records, state, queries, xacts), a BEGIN..COMMIT
# block, \copy both ways, the server's view, and totals after psql exits.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

POL=$(policy_new psql)

# One-shot: psql -c runs under the shim; its counts stay in the totals.
out=$("$PQSHIM" run -p "$POL" -- "$PSQL" -X -A -t -c "select 1")
assert_eq "$out" 1 "psql -c output"
assert_eq "$(jqp "$POL" '.totals.queries')" 1 "totals.queries after psql -c"
assert_eq "$(jqp "$POL" '.totals.xacts')" 1 "totals.xacts after psql -c"
assert_eq "$(jqp "$POL" '.connections | length')" 0 "connections after psql -c exited"

# A session held open: psql reads its statements from a fifo we keep open.
# The conninfo carries a password (trust auth ignores it): it must never show.
PGAPPNAME=t_psql psql_hold psql "$POL" "dbname=pqt password=sekrit-t-psql"
send() { psql_feed psql "$@"; }
conn() { jqp "$POL" ".connections[] | select(.pid == $PID) | $1"; }
# expect STATE QUERIES XACTS WHAT: the held connection's state and counters.
expect() {
	assert_eq "$(conn '[.state, .queries, .xacts] | map(tostring) | join(" ")')" \
		"$1 $2 $3" "$4: state queries xacts"
}

send # connected, nothing run yet
PID=$RUN # pqshim run execs psql
expect idle 0 0 "fresh session"
assert_eq "$(conn .tid)" "$PID" "tid of single-threaded psql"
assert_eq "$(conn .target)" direct "target"
server=$(conn .server)
assert_match "$server" "(^| )port=$PQT_PRIMARY_PORT( |$)" "server names the port"
assert_match "$server" "(^| )dbname=pqt( |$)" "server names the database"
assert_match "$server" "(^| )user=postgres( |$)" "server names the user"
json=$(stat_json "$POL")
[[ $json != *password* && $json != *sekrit* ]] || fail "stat shows a password: $json"
assert_eq "$(jqp "$POL" ".processes[] | select(.pid == $PID) |
	[.program, .threads, .connections] | map(tostring) | join(\" \")")" \
	"psql 1 1" "process record: program threads connections"
assert_eq "$(server_backends t_psql)" 1 "backends with application_name t_psql"

# Autocommit statements: one xact each.
send "create table t_psql_a(i int);" "insert into t_psql_a values (1), (2);" \
	"select count(*) from t_psql_a;"
expect idle 3 3 "three autocommit statements"

# A running statement shows as active.
held_send psql 'select pg_sleep(1);'
is_active() { [ "$(conn .state)" = active ]; }
wait_until 5 is_active || fail "state never 'active' during pg_sleep"
send
expect idle 4 4 "after pg_sleep"

# BEGIN ... COMMIT: in_transaction throughout, one xact at the end.
send "begin;"
expect in_transaction 5 4 "after begin"
assert_eq "$(server_activity t_psql state)" "idle in transaction" "server's view"
send "insert into t_psql_a values (3);" "select count(*) from t_psql_a;"
expect in_transaction 7 4 "inside the transaction"
send "commit;"
expect idle 8 5 "after commit"

# \copy out to a file and back in.
send "\\copy t_psql_a to '$T/a.csv' csv"
expect idle 9 6 "after \\copy to"
assert_eq "$(wc -l <"$T/a.csv")" 3 "rows in the \\copy file"
send "\\copy t_psql_a from '$T/a.csv' csv"
expect idle 10 7 "after \\copy from"
assert_eq "$(sql_primary "select count(*), sum(i) from t_psql_a")" "6|12" "rows after \\copy from"

# psql exits: its records go, the totals keep its work, the backend goes.
held_end psql 0
gone() { [ "$(jqp "$POL" "[.connections[], .processes[] | select(.pid == $PID)] | length")" = 0 ]; }
wait_until 5 gone || fail "psql still in stat after exit: $(stat_json "$POL")"
assert_eq "$(jqp "$POL" '.totals.queries')" 11 "totals.queries after the session"
assert_eq "$(jqp "$POL" '.totals.xacts')" 8 "totals.xacts after the session"
no_backend() { [ "$(server_backends t_psql)" = 0 ]; }
wait_until 5 no_backend || fail "backend t_psql still on the server after psql exited"
assert_eq "$(cat "$T/psql.out")" $'2\n\n3' "psql's output (counts, pg_sleep's empty row)"
sql_primary "drop table t_psql_a"
