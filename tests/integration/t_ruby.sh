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
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

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

client_start ruby_client.rb "$RUBY" "$PQT_ROOT/tests/clients/ruby_client.rb" \
	--app "$APP" --stmts "$K" --pipeline "$P" --copy "$R"
TA=$(client_tid A) TB=$(client_tid B)
assert_eq "$TA" "$PID" "connection A is opened by the main thread"
[[ $TB =~ ^[0-9]+$ ]] && [ "$TB" != "$TA" ] || fail "connection B's thread: '$TB'"

client_held
assert_eq "$(q "[$mine] | length")" 2 "connection records of pid $PID"
client_two_threads '^ruby' "$QA" "$XA" "$QB" "$XB"

client_rows ruby_t
assert_eq "$(client_who ruby_t a_prepared)" 2 "rows: A's exec_prepared"
assert_eq "$(client_who ruby_t a_pipeline)" "$P" "rows: A's pipeline"

client_end ruby_client.rb $((QA + QB)) $((XA + XB))
echo "ok: ruby-pg: 2 connections, $((QA + QB)) statements"
