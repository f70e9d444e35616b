#!/usr/bin/env bash
# t_pgbench.sh: pgbench under the shim. `pgbench -i` (PQexec, and COPY through
# the old PQputline/PQendcopy API), then the built-in TPC-B-like script with
# -M simple (PQsendQuery), -M extended (PQsendQueryParams), -M prepared
# (PQprepare + PQsendQueryPrepared), -C (a new connection per transaction),
# and tests/clients/pipeline.sql (\startpipeline .. \endpipeline) with
# -M extended and -M prepared. Each run gets a fresh policy (its own segment),
# so its totals are its own: pgbench must exit 0, the server must hold the rows
# the transactions wrote, and the totals must match the transactions pgbench
# reports. Last, a -T run with 4 clients in 2 threads is watched while it runs.
#
# Statement counts are exact for PostgreSQL 15's pgbench: besides the script,
# it opens a set-up connection and runs 2 statements on it (GetTableInfo: count of
# pgbench_branches, partitioning info) when it uses a built-in script, none
# with -f; -M prepared prepares a command (PQprepare) on its first use; in a
# pipeline, all of the pipeline's commands before \startpipeline.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

PIPE_SQL=$PQT_ROOT/tests/clients/pipeline.sql
[ -f "$PIPE_SQL" ] || fail "no $PIPE_SQL"

n=0
# bench NAME PGBENCH-ARGS...: fresh policy in $POL, pgbench under the shim,
# exit status checked, transactions processed in $TX.
bench() {
	local name=$1 rc=0
	shift
	n=$((n + 1))
	POL=$(policy_new "pgbench_$n")
	PGAPPNAME=t_pgbench "$PQSHIM" run -p "$POL" -- "$PGBENCH" "$@" \
		>"$T/$n.out" 2>"$T/$n.err" || rc=$?
	assert_eq "$rc" 0 "$name: pgbench exit status (stderr: $(tail -5 "$T/$n.err"))"
	TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/$n.out")
	[[ $TX =~ ^[0-9]+$ ]] || [ "$name" = init ] || fail "$name: no transaction count: $(cat "$T/$n.out")"
	assert_eq "$(jqp "$POL" '[.connections[], .processes[]] | length')" 0 \
		"$name: records left after pgbench exited"
}
# totals WHAT QUERIES XACTS CONNECTS: exact totals of the last run
totals() {
	assert_eq "$(jqp "$POL" '.totals | [.queries, .xacts, .connects, .closes,
		.cross_thread_uses] | map(tostring) | join(" ")')" "$2 $3 $4 $4 0" \
		"$1: totals: queries xacts connects closes cross_thread_uses"
}
history() { sql_primary "select count(*) from pgbench_history"; }

# --- pgbench -i: 27 PQexec (drop; 4 creates; begin, truncate, 1 branch,
# 10 tellers, copy accounts (100000 PQputline, not statements), commit;
# 4 vacuums; 3 primary keys), 13 xacts (the begin..commit block is one)
bench init -i -q -s 1
assert_eq "$(sql_primary "select (select count(*) from pgbench_accounts) || ' ' ||
	(select count(*) from pgbench_tellers) || ' ' || (select count(*) from pgbench_branches)")" \
	"100000 10 1" "rows after pgbench -i (accounts tellers branches)"
totals init 27 13 1

# --- the built-in script: 7 statements (BEGIN .. END), one xact, one
# pgbench_history row per transaction
C=3 TXC=10
for mode in simple extended prepared; do
	h0=$(history)
	bench "$mode" -n -M "$mode" -c "$C" -j "$C" -t "$TXC"
	assert_eq "$TX" "$((C * TXC))" "$mode: transactions processed"
	assert_eq "$(history)" "$((h0 + TX))" "$mode: pgbench_history rows added"
	if [ "$mode" = prepared ]; then
		# + 7 PQprepare per client; the first (BEGIN's) on an idle
		# connection is work of its own, the 6 others come inside the
		# first transaction
		totals "$mode" "$((7 * TX + 2 + 7 * C))" "$((TX + 2 + C))" "$((C + 1))"
	else
		totals "$mode" "$((7 * TX + 2))" "$((TX + 2))" "$((C + 1))"
	fi
done

# --- -C: a connection per transaction (+ the set-up connection)
h0=$(history)
bench connect -n -C -c 2 -j 2 -t 5
assert_eq "$TX" 10 "-C: transactions processed"
assert_eq "$(history)" "$((h0 + TX))" "-C: pgbench_history rows added"
totals "-C" "$((7 * TX + 2))" "$((TX + 2))" "$((TX + 1))"

# --- pipeline.sql: 3 statements in one pipeline (one Sync, one implicit
# transaction) per transaction; with -f the set-up connection runs nothing
h0=$(history)
bench pipeline-extended -n -M extended -f "$PIPE_SQL" -c 2 -j 2 -t 10
assert_eq "$TX" 20 "pipeline extended: transactions processed"
assert_eq "$(history)" "$((h0 + TX))" "pipeline extended: pgbench_history rows added"
totals "pipeline extended" "$((3 * TX))" "$TX" 3

h0=$(history)
bench pipeline-prepared -n -M prepared -f "$PIPE_SQL" -c 2 -j 2 -t 10
assert_eq "$TX" 20 "pipeline prepared: transactions processed"
assert_eq "$(history)" "$((h0 + TX))" "pipeline prepared: pgbench_history rows added"
# + 3 PQprepare per client, each on an idle connection, before the pipeline
totals "pipeline prepared" "$((3 * TX + 3 * 2))" "$((TX + 3 * 2))" 3

# --- watched while it runs: 4 clients in 2 threads (thread 0 is the main one)
POL=$(policy_new pgbench_live)
APP=t_pgbench_live
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 4 -j 2 -T 2 \
	>"$T/live.out" 2>"$T/live.err" &
RUN=$!
bg_track "$RUN"
running() {
	[ "$(jqp "$POL" '[.processes[] | select(.program == "pgbench" and .connections == 4)] |
		length')" = 1 ]
}
wait_until 5 running || fail "no pgbench process with 4 connections: $(stat_json "$POL")"
stat_json "$POL" >"$T/live.json"
q() { jq -r "$1" "$T/live.json"; }
PID=$(q '.processes[] | select(.program == "pgbench") | .pid')
assert_eq "$(server_backends "$APP")" 4 "live: backends of $APP"
assert_eq "$(q ".processes[] | select(.pid == $PID) | .threads")" 2 "live: pgbench threads"
assert_eq "$(q "[.connections[] | select(.pid == $PID)] | group_by(.tid) |
	map(length) | map(tostring) | join(\" \")")" "2 2" \
	"live: connections per opener tid (2 threads x 2 clients)"
assert_eq "$(q "[.connections[] | select(.pid == $PID) | .tid] | index($PID) != null")" true \
	"live: the main thread (tid = pid) runs clients"
assert_eq "$(q "[.connections[] | select(.pid == $PID and .threads != [.tid])] | length")" 0 \
	"live: a connection used by a thread other than its opener"
rc=0
wait "$RUN" || rc=$?
assert_eq "$rc" 0 "live: pgbench exit status (stderr: $(tail -5 "$T/live.err"))"
TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/live.out")
assert_ge "$TX" 1 "live: transactions processed"
gone() { [ "$(jqp "$POL" '[.connections[], .processes[]] | length')" = 0 ]; }
wait_until 5 gone || fail "live: records left after exit"
totals live "$((7 * TX + 2))" "$((TX + 2))" 5
echo "ok: pgbench -i, simple, extended, prepared, -C, pipelines, live view"
