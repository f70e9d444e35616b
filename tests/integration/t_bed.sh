#!/usr/bin/env bash
# t_bed.sh: the test bed itself (pgbed.sh + lib.sh), no shim involved.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# Sockets are where PQT_SOCKDIR says, and PG* point at the primary.
[ -S "$PQT_SOCKDIR/.s.PGSQL.$PQT_PRIMARY_PORT" ] || fail "no primary socket in $PQT_SOCKDIR"
[ -S "$PQT_SOCKDIR/.s.PGSQL.$PQT_REPLICA_PORT" ] || fail "no replica socket in $PQT_SOCKDIR"
assert_eq "$PGHOST:$PGPORT:$PGUSER:$PGDATABASE" \
	"$PQT_SOCKDIR:$PQT_PRIMARY_PORT:postgres:pqt" "PG* variables"
assert_eq "$(sql_primary "show unix_socket_directories")" "$PQT_SOCKDIR" "primary socket dir"
assert_eq "$(sql_primary "show listen_addresses")" "" "primary listens on no TCP address"

assert_eq "$(sql_primary "select pg_is_in_recovery()")" f "primary in recovery"
assert_eq "$(sql_replica "select pg_is_in_recovery()")" t "replica in recovery"
assert_eq "$(sql_primary "select current_database()")" pqt "primary database"
assert_eq "$(sql_replica "select current_database()")" pqt "replica database"
assert_eq "$(sql_primary "select count(*) from pg_stat_replication where state = 'streaming'")" \
	1 "streaming replicas"

# A table created on the primary shows up on the replica within 5 s.
sql_primary "create table t_bed_a(i int); insert into t_bed_a select generate_series(1, 100)"
replica_catch_up 5 "table t_bed_a (in 5 s)"
assert_eq "$(sql_replica "select count(*) from t_bed_a")" 100 "rows on the replica once it caught up"
err=$(sql_replica "insert into t_bed_a values (1)" 2>&1) && fail "replica accepted a write"
assert_match "$err" "read-only transaction" "write on replica"
sql_primary "drop table t_bed_a"

# The library: scratch dir, assertions, server_backends, bg_track.
[ -d "$T" ] && [ -w "$T" ] || fail "no scratch dir T=$T"
assert_ge 2 1.5 "assert_ge"
assert_le 0.4 1 "assert_le"
(assert_eq 1 2 "expected failure") 2>/dev/null && fail "assert_eq passed on 1 vs 2"
rm -f "$T/.failed" # that failure was on purpose
! wait_until 0.2 false 2>/dev/null || fail "wait_until false succeeded"
pol=$(policy_new p "[tracking]
cross_thread = deny
")
assert_eq "$(stat -c %a "$pol")" 600 "policy mode"
assert_match "$(cat "$pol")" $'^\\[shim\\]\nsegment = pqt-[0-9a-f]+\n\\[tracking\\]\ncross_thread = deny$' "policy text"

PGAPPNAME=t_bed_bg "$PSQL" -X -q -c "select pg_sleep(60)" >/dev/null 2>&1 &
bg_track $!
one_backend() { [ "$(server_backends t_bed_bg)" = 1 ]; }
wait_until 5 one_backend || fail "server does not see the t_bed_bg session"
assert_eq "$(server_backends t_bed_bg replica)" 0 "t_bed_bg backends on the replica"

# Programs held open on fifos: each sees EOF when its own fifo is closed (the
# second one does not hold the first one's write end), and only then.
held_start a cat
held_start b cat
held_send a READY "a line"
held_ready a
held_end a 0 5
assert_eq "$(cat "$T/a.out")" $'READY\na line' "held a: what it read"
kill -0 "${HELD_PID[b]}" 2>/dev/null || fail "held b ended before its EOF"
held_end b 0 5
# psql_feed returns once psql has run what it was sent; server_activity.
held_start p env PGAPPNAME=t_bed_psql "$PSQL" -X -A -t -q
psql_feed p "select 41 + 1;"
assert_eq "$(cat "$T/p.out")" 42 "psql_feed: psql ran it"
assert_eq "$(server_activity t_bed_psql "state || '|' || query")" "idle|select 41 + 1;" "server_activity"
held_end p 0
