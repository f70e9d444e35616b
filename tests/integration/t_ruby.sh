#!/usr/bin/env bash
# t_ruby.sh: ruby-pg (libpq linked at build time; its default API is the
# asynchronous one: PQconnectStart/PQconnectPoll, PQsendQuery*, PQgetResult).
# Two connections (main thread: exec, exec_params, prepare/exec_prepared,
# COPY both ways, pipeline mode; a second Ruby thread: transaction blocks and
# a send_query/get_result loop). Checks, while held, the server's view and
# `pqshim stat` (records per opener tid, exact counts), then the data and the
# totals after exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
RUBY=/usr/bin/ruby
[ -x "$RUBY" ] && "$RUBY" -rpg -e 1 2>/dev/null || fail "needs /usr/bin/ruby with ruby-pg (Debian: ruby-pg)"
POL=$(policy_new ruby)
APP=t_ruby
K=10 P=8 R=50
SECRET=sekrit-t-ruby

# Per connection (see tests/clients/ruby_client.rb):
#  A: CREATE, DELETE (2), K exec_params, PQsendPrepare + 2 exec_prepared (3),
#     COPY FROM, COPY TO (2), P pipelined INSERTs: K+P+7 statements;
#     xacts: 2 + K + 3 (a prepare on an idle connection is work that ends
#     idle) + 2 + 1 (the pipeline: one Sync, one implicit transaction) = K+8
#  B: BEGIN, K INSERTs, COMMIT; BEGIN, 2 INSERTs, ROLLBACK; one send_query:
#     K+7 statements, 3 xacts
QA=$((K + P + 7)) XA=$((K + 8)) QB=$((K + 7)) XB=3

mkfifo "$T/in"
PGPASSWORD=$SECRET "$PQSHIM" run -p "$POL" -- "$RUBY" "$PQT_ROOT/tests/clients/ruby_client.rb" \
	--app "$APP" --stmts "$K" --pipeline "$P" --copy "$R" <"$T/in" >"$T/out" 2>"$T/err" &
RUN=$!
bg_track "$RUN"
exec 3>"$T/in"
at_exit 'exec 3>&-'

ready_or_gone() { grep -qx READY "$T/out" || ! kill -0 "$RUN" 2>/dev/null; }
wait_until 20 ready_or_gone || fail "ruby_client.rb never got READY"
grep -qx READY "$T/out" || fail "ruby_client.rb failed before READY: $(cat "$T/err")"
PID=$(awk '$1 == "PID" { print $2 }' "$T/out")
tid_of() { sed -n 's/^CONN //p' "$T/out" | jq -r "select(.name == \"$1\") | .tid"; }
TA=$(tid_of A) TB=$(tid_of B)
assert_eq "$TA" "$PID" "connection A is opened by the main thread"
[[ $TB =~ ^[0-9]+$ ]] && [ "$TB" != "$TA" ] || fail "connection B's thread: '$TB'"

assert_eq "$(server_backends "$APP")" 2 "backends with application_name $APP"

stat_json "$POL" >"$T/held.json"
! grep -q "$SECRET" "$T/held.json" || fail "stat shows the password"
q() { jq -r "$1" "$T/held.json"; }
mine=".connections[] | select(.pid == $PID)"
assert_eq "$(q "[$mine] | length")" 2 "connection records of pid $PID"
assert_eq "$(q "[$mine | .tid] | sort | map(tostring) | join(\" \")")" \
	"$(printf '%s\n' "$TA" "$TB" | sort -n | tr '\n' ' ' | sed 's/ $//')" "opener tids"
rec() { q "$mine | select(.tid == $1) | [.threads == [.tid], .state, .status, .inherited,
	.application_name, .queries, .xacts] | map(tostring) | join(\" \")"; }
assert_eq "$(rec "$TA")" "true idle ok false $APP $QA $XA" \
	"A: only-opener state status inherited application_name queries xacts"
assert_eq "$(rec "$TB")" "true idle ok false $APP $QB $XB" \
	"B: only-opener state status inherited application_name queries xacts"
assert_match "$(q "[$mine][0].server")" "(^| )port=$PQT_PRIMARY_PORT( |$)" "server"
assert_match "$(q ".processes[] | select(.pid == $PID) | .program")" '^ruby' "program"
assert_eq "$(q ".processes[] | select(.pid == $PID) | .connections")" 2 \
	"process record: connections"
assert_ge "$(q ".processes[] | select(.pid == $PID) | .threads")" 2 \
	"process record: threads"

who() { sql_primary "select count(*) from ruby_t where app = '$APP' and who = '$1'"; }
assert_eq "$(who a)" "$K" "rows: A's exec_params"
assert_eq "$(who a_prepared)" 2 "rows: A's exec_prepared"
assert_eq "$(who a_copy)" "$R" "rows: A's COPY FROM"
assert_eq "$(who a_pipeline)" "$P" "rows: A's pipeline"
assert_eq "$(who b)" "$K" "rows: B's transaction"
assert_eq "$(who b_rolled_back)" 0 "rows: B's rolled back transaction"

exec 3>&-
rc=0
wait "$RUN" || rc=$?
assert_eq "$rc" 0 "ruby_client.rb exit status (stderr: $(cat "$T/err"))"
grep -q '^DONE ' "$T/out" || fail "no DONE line"

gone() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $PID)] | length")" = 0 ]; }
wait_until 5 gone || fail "records of pid $PID still listed after exit"
assert_eq "$(jqp "$POL" '.totals | [.connects, .closes, .queries, .xacts] |
	map(tostring) | join(" ")')" "2 2 $((QA + QB)) $((XA + XB))" \
	"totals: connects closes queries xacts"
assert_eq "$(server_backends "$APP")" 0 "backends left after exit"
echo "ok: ruby-pg: 2 connections, $((QA + QB)) statements"
