#!/usr/bin/env bash
# t_lane_nested.sh: an exclusive lane with an event loop and with nested
# connections: nothing deadlocks, the lane still runs alone.
#  - pgbench -c 4 -j 1 (one thread driving 4 connections: sends deferred,
#    shim/defer.c) loops BEGIN; pg_sleep(10 ms); INSERT its row; END for 5 s
#    in the default lane while a migration (lane "migrations", exclusive)
#    runs 3 transactions of 200 ms, from 2 s after its client is ready
#    (pgbench starts then). Both end in time; from the rows (the
#    server's now() and clock_timestamp()) no pgbench transaction overlapped
#    a migration's, pgbench ran before, between and after them, and each
#    migration waited < 0.5 s (it goes first once the loop's transactions
#    running when it asked end; the loop starts none riding on its slot).
#  - nested = share: a thread of the migration lane holds its exclusive slot
#    inside BEGIN on one connection and runs `select 1` on a second one: it
#    rides on the slot at once (it would wait on itself), while a thread of
#    another process waits until the holder commits.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
TBL=t_lanen
lane_table $TBL
POL=$(policy_new lanen '[cap]
wait_timeout = 20s
nested = share

[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
')
cat >"$T/x.sql" <<SQL
BEGIN;
SELECT pg_sleep(0.01);
INSERT INTO $TBL (app, asked, t0, t1) VALUES ('pgbench', now(), now(), clock_timestamp());
END;
SQL
# The migration's client starts (and connects) first: its transactions
# begin 2 s after it is ready, whatever Python's start-up took, while
# pgbench runs for 5 s from then: pgbench has time before and after them.
lane_load mig "$POL" $TBL migrate-1 --count 3 --sleep 0.2 --delay 2
mig_ready() { grep -q READY "$T/mig.out"; }
wait_until 20 mig_ready || fail "the migration's client never got ready ($(tail -3 "$T/mig.err"))"
PGAPPNAME=t_lanen_pgb timeout 30 "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 4 -j 1 -T 5 -f "$T/x.sql" \
	>"$T/pgb.out" 2>"$T/pgb.err" &
pgb=$!
bg_track "$pgb"
lane_wait mig
rc=0; wait "$pgb" || rc=$?
assert_eq "$rc" 0 "pgbench -c 4 -j 1: exit status ($(tail -3 "$T/pgb.err"))"
M="(select * from $TBL where app = 'migrate-1')"
# Each wait, and the pgbench transactions that began during it: the
# exclusive one waits for the loop's transactions running when it asked
# (10 ms each), not for new ones riding on the loop's slot (nested =
# share at a kick, handed on at each end: 0.5 - 2.7 s before the fix).
note "migration waits: $(q "select string_agg(round(extract(epoch from m.t0 - m.asked)::numeric, 3)::text || ' (' || (select count(*) from $TBL x where x.app = 'pgbench' and x.t0 > m.asked and x.t0 < m.t0) || ' began meanwhile)', ' ') from $M m")"
assert_eq "$(q "select count(*) from $M m")" 3 "server: the migration's transactions"
assert_eq "$(q "select count(*) from $TBL x, $M m where x.app = 'pgbench' and x.t0 < m.t1 and x.t1 > m.t0")" 0 \
	"server: pgbench transactions that overlapped a migration's"
assert_le "$(q "select max(extract(epoch from t0 - asked))::numeric(8,3) from $M m")" 0.5 \
	"server: the longest migration wait (its BEGIN's now() - when it asked), s"
assert_ge "$(q "select count(*) from $TBL x where x.app = 'pgbench' and x.t1 < (select min(t0) from $M m)")" 10 \
	"server: pgbench transactions before the migrations"
assert_ge "$(q "select count(*) from $TBL x where x.app = 'pgbench' and x.t0 > (select max(t1) from $M m)")" 10 \
	"server: pgbench transactions after the migrations"
assert_ge "$(q "select count(*) from $TBL a, $TBL b where a.app = 'pgbench' and b.app = 'pgbench' and a.ctid <> b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 1 \
	"server: pgbench's 4 connections ran side by side otherwise"

# nested = share inside the exclusive lane
PROBE_ARGS=(--suffix)
probe_start x "$POL" migrate-n
pcmd x "a connect c1"
pcmd x "a connect c2"
pcmd x "a exec c1 begin"
pcmd x "a exec c1 select 1"
assert_eq "$(jqp "$POL" '.lanes[] | select(.name == "migrations") | .active')" 1 "stat: the exclusive slot held"
PROBE_ARGS=()
probe_start o "$POL" t_lanen_other
pcmd o "a connect c"
psend o "a exec c select 2"
oseq=$SEQ
pcmd x "a exec c2 select 3" 5
assert_eq "$(r .ok) $(r ".rows | tojson")" "true [[3]]" "nested connection of the holder's thread: $R"
assert_le "$(r .elapsed)" 0.5 "nested connection: it shared the slot at once"
sleep 0.3
pending o "$oseq" || fail "another process ran beside the exclusive transaction"
assert_eq "$(server_activity t_lanen_other "state || '|' || query")" "idle|" "server: the other process waits, sent nothing"
pcmd x "a exec c1 commit"
presult o "$oseq" 5
assert_eq "$(r .ok) $(r ".rows | tojson")" "true [[2]]" "the other process after the commit: $R"
probe_end x
probe_end o
echo "ok: event loop and nested connections with an exclusive lane"
