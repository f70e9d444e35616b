#!/usr/bin/env bash
# t_py_threads.sh: psycopg2 (its _psycopg.so is dlopen'ed privately, so the
# shim must find libpq without RTLD_NEXT) with one connection per thread:
# autocommit, explicit transactions, COPY both ways, a named cursor and an
# async connection (PQconnectStart/PQconnectPoll, PQsendQuery). Checks, while
# the connections are held open, the server's view (pg_stat_activity) and
# `pqshim stat --json` (one record per connection, grouped by pid and opener
# tid, exact statement and transaction counts), then the data written and the
# totals once the program has exited.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

POL=$(policy_new py_threads)
APP=t_py_threads
N=6 # threads: plain, xact, copy, named, async, plain
K=10
SECRET=sekrit-t-py-threads # trust auth ignores it; it must never show

# Per connection (see tests/clients/py_threads.py), statements and xacts:
#   plain  K INSERTs                                   K        K
#   xact   3 x (BEGIN, K INSERTs, COMMIT),           4K+12      5
#          BEGIN, 2 INSERTs, ROLLBACK,
#          BEGIN, K INSERTs, COMMIT (autocommit, explicit)
#   copy   BEGIN, COPY FROM, COPY TO, COMMIT           4        1
#   named  BEGIN, DECLARE, F FETCHes, CLOSE,          F+5       1
#          INSERT, COMMIT; F = ceil(10K/30) + 1 (the last one empty)
#   async  K INSERTs (PQsendQuery)                     K        K
#   set-up connection (main thread, closed before the workers start):
#          CREATE TABLE IF NOT EXISTS, DELETE          2        2
F=$(((10 * K + 29) / 30 + 1))
declare -A EQ=([plain]=$K [xact]=$((4 * K + 12)) [copy]=4 [named]=$((F + 5)) [async]=$K)
declare -A EX=([plain]=$K [xact]=5 [copy]=1 [named]=1 [async]=$K)
TOTAL_Q=$((2 + (N - 4) * K + 4 * K + 12 + 4 + F + 5 + K))
TOTAL_X=$((2 + (N - 4) * K + 5 + 1 + 1 + K))

PGPASSWORD=$SECRET held_start py "$PQSHIM" run -p "$POL" -- "$PY" \
	"$PQT_ROOT/tests/clients/py_threads.py" --app "$APP" --threads "$N" --stmts "$K"
held_ready py
PID=$(awk '$1 == "PID" { print $2 }' "$T/py.out")
[ -n "$PID" ] || fail "no PID line: $(cat "$T/py.out")"
# role of each worker tid, from the program's own report
sed -n 's/^THREAD //p' "$T/py.out" >"$T/threads.jsonl"
assert_eq "$(wc -l <"$T/threads.jsonl")" "$N" "THREAD lines"
want_tids=$(jq -r .tid "$T/threads.jsonl" | sort -n | tr '\n' ' ')

# --- the server's view ---------------------------------------------------
assert_eq "$(server_backends "$APP")" "$N" "backends with application_name $APP"

# --- pqshim's view -------------------------------------------------------
stat_json "$POL" >"$T/held.json"
! grep -q "$SECRET" "$T/held.json" || fail "stat shows the password: $(cat "$T/held.json")"
q() { jq -r "$1" "$T/held.json"; }
mine=".connections[] | select(.pid == $PID)"

assert_eq "$(q "[$mine] | length")" "$N" "connection records of pid $PID"
assert_eq "$(q "[.connections[] | select(.pid != $PID)] | length")" 0 "records of other pids"
assert_eq "$(q "[$mine | .tid] | sort | map(tostring) | join(\" \")") " "$want_tids" \
	"opener tids of the records = the worker threads' tids"
assert_eq "$(q "[$mine | .tid] | unique | length")" "$N" "distinct opener tids"
assert_eq "$(q "[$mine | select(.threads != [.tid])] | length")" 0 \
	"records used by a thread other than the opener (threads != [tid])"
assert_eq "$(q "[$mine | .cross_thread_uses] | add")" 0 "cross_thread_uses"
assert_eq "$(q "[$mine | select(.state != \"idle\" or .status != \"ok\")] | length")" 0 \
	"records not idle/ok while held"
assert_eq "$(q "[$mine | select(.target != \"direct\" or .inherited != false)] | length")" 0 \
	"records not direct / marked inherited"
assert_eq "$(q "[$mine | select(.application_name != \"$APP\")] | length")" 0 \
	"records whose application_name is not $APP"
server=$(q "[$mine][0].server")
assert_match "$server" "(^| )port=$PQT_PRIMARY_PORT( |$)" "server names the port"
assert_match "$server" "(^| )dbname=pqt( |$)" "server names the database"

proc=".processes[] | select(.pid == $PID)"
assert_eq "$(q "[$proc] | length")" 1 "process records of pid $PID"
assert_match "$(q "$proc | .program")" '^python3(\.[0-9]+)?$' "program"
assert_eq "$(q "$proc | .connections")" "$N" "process record: connections"
assert_ge "$(q "$proc | .threads")" "$((N + 1))" "process record: threads (main + workers)"

while read -r line; do
	role=$(jq -r .role <<<"$line") tid=$(jq -r .tid <<<"$line")
	rec=$(q "$mine | select(.tid == $tid) | [.queries, .xacts] | map(tostring) | join(\" \")")
	assert_eq "$rec" "${EQ[$role]} ${EX[$role]}" "thread $tid ($role): queries xacts"
done <"$T/threads.jsonl"

# --- the data the threads wrote is on the server -------------------------
rows() { sql_primary "select count(*) from py_threads_t where app = '$APP' and role $1"; }
assert_eq "$(rows "in ('plain0', 'plain5')")" "$((2 * K))" "rows of the plain threads"
assert_eq "$(rows "= 'xact'")" "$((4 * K))" "rows of the xact thread (committed)"
assert_eq "$(rows "= 'xact_rolled_back'")" 0 "rows of the rolled back transaction"
assert_eq "$(rows "= 'copy'")" "$((10 * K))" "rows of COPY FROM"
assert_eq "$(sql_primary "select n from py_threads_t where app = '$APP' and role = 'named'")" \
	"$((10 * K * (10 * K + 1) / 2))" "sum written by the named-cursor thread"
assert_eq "$(rows "= 'async'")" "$K" "rows of the async connection"

# --- release: every thread closes its connection, the program exits 0 ----
held_end py 0
grep -q '^DONE ' "$T/py.out" || fail "no DONE line"

gone() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $PID)] | length")" = 0 ]; }
wait_until 5 gone || fail "records of pid $PID still listed after exit"
assert_eq "$(jqp "$POL" "[.processes[] | select(.pid == $PID)] | length")" 0 \
	"process record after exit"
assert_eq "$(jqp "$POL" '.totals | [.connects, .closes] | map(tostring) | join(" ")')" \
	"$((N + 1)) $((N + 1))" "totals: connects closes"
assert_eq "$(jqp "$POL" .totals.queries)" "$TOTAL_Q" "totals.queries"
assert_eq "$(jqp "$POL" .totals.xacts)" "$TOTAL_X" "totals.xacts"
assert_eq "$(jqp "$POL" .totals.cross_thread_uses)" 0 "totals.cross_thread_uses"
assert_eq "$(server_backends "$APP")" 0 "backends left after exit"
echo "ok: py_threads: $N connections in $N threads, $TOTAL_Q statements, $TOTAL_X xacts"
