#!/usr/bin/env bash
# t_out_raise.sh: a raised cap reaches a waiter even when no process makes a
# call. Under max_active = 1 (wait_timeout = 15s), psql H holds the slot
# idle in a transaction (single-threaded, sitting on its stdin: it calls
# nothing), and a psycopg2 program W waits for it. No process routes, so
# no shim thread or drainer runs. The policy is renamed over with
# max_active = 2: W's statement must run within 3 s of the rename, while H
# is still in its transaction (on the SERVER: W's row is logged within 3 s
# of the rename, H's backend still idle in transaction afterwards).
# (Before: every process was either idle or waiting, none looked at the
# file; W timed out after its 15 s while H held the slot.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

APP=t_out_raise
POL=$(policy_new raise "log = $T/shim.log
[cap]
max_active = 1
wait_timeout = 15s
")
sql_primary "drop table if exists raise_log; create table raise_log (who text, t timestamptz)"
sleep 0.6 # the policy settled: the processes take it at once
PGAPPNAME=${APP}_h psql_hold h "$POL"
psql_feed h "begin;" "insert into raise_log values ('h', clock_timestamp());"
"$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/py_exec.py" one "${APP}_w" raise_log \
	>"$T/w.out" 2>"$T/w.err" &
W=$!
bg_track "$W"
waiting() { [ "$(jqp "$POL" .cap.waiting)" = 1 ]; }
wait_until 10 waiting || fail "W never queued: $(cat "$T/w.err")"
sleep 1
sed 's/^max_active = 1$/max_active = 2/' "$POL" >"$POL.new"
chmod 0600 "$POL.new"
mv "$POL.new" "$POL"
renamed=$(sql_primary "select extract(epoch from clock_timestamp())")
done_w() { grep -Eq '^(OK|ERR)' "$T/w.out"; }
wait_until 20 done_w || fail "W never finished: $(cat "$T/w.err")"
note "W: $(cat "$T/w.out"), renamed at $renamed"
assert_match "$(cat "$T/w.out")" '^OK' "W's statement"
w_at=$(sql_primary "select extract(epoch from t) from raise_log where who = '${APP}_w'")
assert_le "$(awk -v a="$w_at" -v b="$renamed" 'BEGIN { printf "%.3f", a - b }')" 3 \
	"server: W's row, seconds after the rename"
assert_eq "$(server_activity "${APP}_h" state)" "idle in transaction" "server: H still in its transaction"
psql_feed h "commit;"
held_end h 0
