#!/usr/bin/env bash
# t_robust_thread_exit.sh - the slot of an open transaction belongs to the
# connection, not to the thread: a thread that exits mid-transaction leaves
# its slot held until the server's transaction ends or the connection closes.
#  max_active = 2, wait_timeout = 2s.  Two psycopg2 threads each run a
#  statement (psycopg2 opens a transaction) and exit; their connections stay
#  open.  A monitor outside the shim samples pg_stat_activity, counting a
#  backend only if it was busy since before the sample began.
#  - stat: both slots held, both holders shown as orphans with their age;
#    the server: both idle in transaction.
#  - two new transactions (0.3 s each) wait and fail with 53300 by
#    wait_timeout: the server never sees more than 2 busy together.
#  - the server ends one orphan's backend: a new transaction gets that slot
#    (the shim notices the lost connection while the transaction waits).
#  - the orphans are closed: stat shows nothing active, two new
#    transactions run.
#  Before the fix, a thread's exit gave its slots back while the server kept
#  its transactions open: 2 orphans + 2 new = 4 busy under max_active = 2.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
POL=$(policy_new texit "[cap]
max_active = 2
wait_timeout = 2s
")
env -u LD_PRELOAD -u PQSHIM_POLICY "$PY" "$ROB" monitor --prefix t_robust_texit \
	--out "$T/samples" --stop-file "$T/stop" >"$T/monitor.out" 2>"$T/monitor.err" &
MON=$!
bg_track $MON
wait_until 10 grep -qx READY "$T/monitor.out" || fail "monitor: $(cat "$T/monitor.err")"
mkfifo "$T/c.in"
"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" thread-exit --app t_robust_texit --orphans 2 \
	<"$T/c.in" >"$T/c.out" 2>"$T/c.err" &
P=$!
bg_track $P
exec {FD}>"$T/c.in"
wait_until 10 grep -q '^ORPHANED' "$T/c.out" || fail "no orphans: $(cat "$T/c.err")"
read -r -a OB <<<"$(sed -n 's/^ORPHANED //p' "$T/c.out")"
assert_eq "${#OB[@]}" 2 "orphans made"
assert_eq "$(sql_primary "select string_agg(state, ',') from pg_stat_activity
	where application_name = 't_robust_texit_orphan'")" "idle in transaction,idle in transaction" \
	"server: the orphans' transactions"
assert_eq "$(jqp "$POL" .cap.active)" 2 "stat: the orphans' slots are still held"
assert_eq "$(jqp "$POL" '[.connections[] | select(.orphan == true and .orphan_s >= 0)] | length')" 2 \
	"stat: both holders shown as orphans with their age: $(jqp "$POL" '.connections | tostring')"

answers() { [ "$(grep -c '^XACT' "$T/c.out")" -gt "$1" ]; }
xact() { # K: run K transactions, result in $X
	local n
	n=$(grep -c '^XACT' "$T/c.out" || true)
	echo "xact $1" >&"$FD"
	wait_until 6 answers "$n" || fail "xact $1: no answer in 6 s"
	X=$(grep '^XACT' "$T/c.out" | tail -1 | sed 's/^XACT //')
}
xact 2
note "two new transactions while the orphans hold both slots: $X"
assert_eq "$(jq -r 'map(.pgcode // "ok") | join(",")' <<<"$X")" "53300,53300" "new transactions over the cap"
assert_le "$(jq 'map(.elapsed) | max' <<<"$X")" 2.6 "their waits (s)"

assert_eq "$(sql_primary "select pg_terminate_backend(${OB[0]})")" t "the server ends an orphan's backend"
xact 1
note "one new transaction after that: $X"
assert_eq "$(jq -r '.[0].ok' <<<"$X")" true "a new transaction gets the lost orphan's slot"

echo close >&"$FD"
wait_until 5 grep -q '^CLOSED' "$T/c.out" || fail "close: no answer"
assert_eq "$(jqp "$POL" .cap.active)" 0 "stat: active after the orphans closed"
xact 2
assert_eq "$(jq -r 'map(.ok) | join(",")' <<<"$X")" "true,true" "two new transactions after the close"
exec {FD}>&-
wait $P || fail "client exit status: $(cat "$T/c.err")"
touch "$T/stop"
wait $MON || fail "monitor failed: $(cat "$T/monitor.err")"
peak=$(awk '{ if ($4 > m) m = $4 } END { print m + 0 }' "$T/samples")
note "server: at most $peak backends busy together (strict), $(wc -l <"$T/samples") samples"
assert_le "$peak" 2 "server: busy backends together (max_active = 2)"
