#!/usr/bin/env bash
# t_psycopg3.sh: psycopg 3's pure-Python implementation (PSYCOPG_IMPL=python),
# which reaches libpq only through ctypes (dlsym on libpq's own handle), so
# plain symbol interposition sees none of its calls. Two connections (main
# thread: autocommit, parameters, an explicit prepare, a pipeline, COPY both
# ways; a second thread: transaction(), a rollback, commit). Checks, while
# held, the server's view and `pqshim stat` (one record per connection with
# its opener tid and exact counts), then the data and the totals after exit.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

POL=$(policy_new psycopg3)
APP=t_psycopg3
K=10 P=8 R=50
SECRET=sekrit-t-psycopg3

# Per connection (see tests/clients/py3_client.py):
#  A: CREATE, DELETE (2), K INSERTs, PQsendPrepare + 2 PQsendQueryPrepared (3),
#     P pipelined INSERTs, COPY FROM, COPY TO: K+P+7 statements;
#     xacts: 2 + K + 3 + 1 (the pipeline: P statements, one Sync, one
#     implicit transaction: the connection is idle again only after the
#     Sync) + 2 = K+8
#  B: BEGIN, K INSERTs, COMMIT; BEGIN, 2 INSERTs, ROLLBACK; BEGIN, SELECT,
#     COMMIT: K+9 statements, 3 xacts
QA=$((K + P + 7)) XA=$((K + 8)) QB=$((K + 9)) XB=3

client_start py3_client.py env PSYCOPG_IMPL=python "$PY" "$PQT_ROOT/tests/clients/py3_client.py" \
	--app "$APP" --stmts "$K" --pipeline "$P" --copy "$R"
TA=$(client_tid A) TB=$(client_tid B)
assert_eq "$TA" "$PID" "connection A is opened by the main thread"
[ -n "$TB" ] && [ "$TB" != "$TA" ] || fail "connection B's thread: '$TB'"

client_held
assert_eq "$(q "[$mine] | length")" 2 \
	"connection records of pid $PID (none: the ctypes look-ups escaped the shim)"
client_two_threads '^python3(\.[0-9]+)?$' "$QA" "$XA" "$QB" "$XB"

client_rows py3_t
assert_eq "$(client_who py3_t a_prepared)" 2 "rows: A's prepared INSERTs"
assert_eq "$(client_who py3_t a_pipeline)" "$P" "rows: A's pipeline"

client_end py3_client.py $((QA + QB)) $((XA + XB))
assert_match "$(sed -n 's/^DONE //p' "$T/out")" '"impl": "python"' "psycopg implementation"
echo "ok: psycopg 3 (ctypes): 2 connections, $((QA + QB)) statements"
