#!/usr/bin/env bash
# t_lane_loop_excl.sh: an exclusive lane's waiter goes first, before any
# transaction an event loop begins after it asked.  One thread drives two
# asynchronous connections (py_loop_excl.py): x holds the slot in a
# transaction with a statement in flight when the migration (lane
# "migrations", exclusive) asks, then y's BEGIN is deferred (defer.c); x's
# result is a kick while x is idle in its transaction.  y must not ride on
# x's slot (nested = share) there: it would be handed the slot at x's
# COMMIT and the migration would wait for y's transaction too (an event
# loop of many such connections kept a migration waiting for seconds).
# From the server's rows: the migration ran after x, y after the migration
# (it asked after the migration did).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
TBL=t_lanelx
lane_table $TBL
POL=$(policy_new lanelx '[cap]
wait_timeout = 10s
nested = share

[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
')
: >"$T/mig.out"
timeout 60 "$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/py_loop_excl.py" $TBL "$T/mig.out" \
	>"$T/loop.out" 2>"$T/loop.err" &
loop=$!
bg_track "$loop"
x_holds() { grep -q X_HOLDS "$T/loop.out"; }
wait_until 20 x_holds || fail "the loop never began x's transaction ($(tail -3 "$T/loop.err"))"
# asks at once once connected (READY), while x holds the slot
lane_load mig "$POL" $TBL migrate-loop --count 1 --sleep 0.2
lane_wait mig
rc=0; wait "$loop" || rc=$?
t() { q "select extract(epoch from $1)::numeric(16,3) from $TBL where app = '$2'"; }
note "x $(t t0 loop-x)-$(t t1 loop-x), migration asked $(t asked migrate-loop) ran $(t t0 migrate-loop)-$(t t1 migrate-loop), y $(t t0 loop-y)-$(t t1 loop-y)"
assert_eq "$rc $(tail -1 "$T/loop.out")" "0 DONE" "the loop and the migration ($(tail -3 "$T/loop.err"))"
assert_eq "$(q "select count(*) from $TBL")" 3 "server: the three transactions"
assert_eq "$(q "select (select t0 from $TBL where app = 'migrate-loop') > (select t1 from $TBL where app = 'loop-x')")" t \
	"server: the migration began after x's transaction"
assert_eq "$(q "select (select t0 from $TBL where app = 'loop-y') > (select t1 from $TBL where app = 'migrate-loop')")" t \
	"server: y's transaction (asked after the migration) began after the migration's"
assert_eq "$(q "select count(*) from $TBL a, $TBL b where a.app = 'migrate-loop' and b.app <> a.app and a.t0 < b.t1 and a.t1 > b.t0")" 0 \
	"server: transactions that overlapped the migration's"
echo "ok: a deferred send of an event loop does not ride past an exclusive waiter"
