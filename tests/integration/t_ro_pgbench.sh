#!/usr/bin/env bash
# t_ro_pgbench.sh: pgbench under the shim while a flag file turns read-only
# on. A select-only run (-S, 4 clients in 4 threads, 6 s), with -M prepared
# (statements prepared by name, prepared again on the replica when a
# connection moves) and with -M simple: the flag appears after ~1.5 s and
# pgbench must not notice: exit 0, no client aborted, no failed transaction;
# the server's view: within drain_timeout (5 s) of the flag the primary shows
# none of pgbench's connections and the replica shows all 4; stat counts at
# least 4 migrations. Then, read-only still on, the default TPC-B-like
# (write) script fails at the server with 25006 (read-only transaction);
# once the flag is gone, the same run succeeds. Last, the select run again
# with a pipeline script (-M extended, \startpipeline .. \endpipeline):
# connections idle in pipeline mode must move too.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"


# pgbench's tables, made here without the shim, and on the replica too.
env -u LD_PRELOAD -u PQSHIM_POLICY "$PGBENCH" -i -q -s 1 >"$T/init.out" 2>&1 ||
	fail "pgbench -i: $(tail -5 "$T/init.out")"
replica_catch_up 15 "pgbench's tables"
assert_eq "$(sql_replica "select (select count(*) from pgbench_accounts) || ' ' ||
	(select count(*) from pgbench_branches)")" "100000 1" "pgbench's tables on the replica"

FLAG=$T/read-only.flag
APP=t_ro_pgbench
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }
on_primary() { server_backends "$APP"; }
on_replica() { server_backends "$APP" replica; }

# select_run LABEL PGBENCH-ARGS...: a read-only run of 4 clients in 4
# threads for 6 s, the flag touched ~1.5 s in.
select_run() {
	local mode=$1 pol rc=0 t0 took out
	shift
	rm -f "$FLAG"
	pol=$(ro_policy "sel_$mode" "$T/shim_$mode.log" "drain_timeout = 5s")
	PGAPPNAME=$APP "$PQSHIM" run -p "$pol" -- "$PGBENCH" -n "$@" -c 4 -j 4 -T 6 \
		>"$T/$mode.out" 2>"$T/$mode.err" &
	local run=$!
	bg_track "$run"
	four_on_primary() { [ "$(on_primary)" = 4 ]; }
	wait_until 5 four_on_primary || fail "$mode: pgbench's 4 connections never showed on the primary ($(on_primary)): $(cat "$T/$mode.err")"
	assert_eq "$(on_replica)" 0 "$mode: nothing of pgbench's on the replica before the flag"
	assert_eq "$(jqp "$pol" '[.connections[] | select(.target == "primary")] | length')" 4 \
		"$mode: stat's targets before the flag"
	sleep 1.5
	kill -0 "$run" 2>/dev/null || fail "$mode: pgbench ended before the flag: $(cat "$T/$mode.err")"
	touch "$FLAG"
	t0=${EPOCHREALTIME/./}
	none_on_primary() { [ "$(on_primary)" = 0 ]; }
	wait_until 5 none_on_primary ||
		fail "$mode: pgbench's connections still on the primary 5 s after the flag: $(server_activity "$APP" "pid, state, query"); stat: $(stat_json "$pol" |
			jq -c '[.connections[] | {tid, target, state, status, backend_pid, queries}]'); shim log: $(cat "$T/shim_$mode.log")"
	took=$(ms_since "$t0")
	note "$mode: the primary had none of pgbench's connections ${took} ms after the flag"
	kill -0 "$run" 2>/dev/null ||
		fail "$mode: pgbench ended before its connections were seen on the replica: $(tail -5 "$T/$mode.err")"
	assert_eq "$(on_replica)" 4 "$mode: pgbench's 4 connections on the replica"
	assert_eq "$(jqp "$pol" '[.connections[] | select(.target == "replica")] | length')" 4 \
		"$mode: stat's targets after the flag"
	wait "$run" || rc=$?
	out=$(cat "$T/$mode.out" "$T/$mode.err")
	assert_eq "$rc" 0 "$mode: pgbench's exit status (output: $(tail -8 <<<"$out"))"
	[[ $out != *aborted* ]] || fail "$mode: a client aborted: $(grep -m3 aborted <<<"$out")"
	assert_match "$out" $'number of failed transactions: 0 \\(' "$mode: no failed transaction"
	local tx
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/$mode.out")
	assert_ge "${tx:-0}" 100 "$mode: transactions processed"
	local S
	S=$(stat_json "$pol")
	assert_ge "$(jq .totals.migrations <<<"$S")" 4 "$mode: totals.migrations"
	assert_ge "$(jq .totals.redirects <<<"$S")" 4 "$mode: totals.redirects"
	none_on_replica() { [ "$(on_replica)" = 0 ]; }
	wait_until 5 none_on_replica || fail "$mode: pgbench's connections left on the replica after it exited"
	POL=$pol
}

select_run prepared -S -M prepared
select_run simple -S -M simple

# --- writes while read-only is on: refused by the server -------------------
# (the flag is still there; POL is the last run's policy)
[ -e "$FLAG" ] || fail "the flag is gone"
rc=0
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 2 -j 2 -T 3 \
	>"$T/write_ro.out" 2>"$T/write_ro.err" || rc=$?
out=$(cat "$T/write_ro.out" "$T/write_ro.err")
[ "$rc" != 0 ] || fail "the write workload succeeded while read-only: $(tail -8 <<<"$out")"
assert_match "$out" "read-only transaction|25006" "the write workload's error (exit $rc)"
grep -q "aborted" <<<"$out" || fail "no client aborted on a refused write: $(tail -8 <<<"$out")"
note "read-only write run: exit $rc, $(grep -m1 -E 'read-only transaction|25006' <<<"$out")"

# --- the flag goes: the same workload succeeds on the primary ------------------
rm -f "$FLAG"
h0=$(sql_primary "select count(*) from pgbench_history")
rc=0
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 2 -j 2 -T 3 \
	>"$T/write_rw.out" 2>"$T/write_rw.err" || rc=$?
out=$(cat "$T/write_rw.out" "$T/write_rw.err")
assert_eq "$rc" 0 "the write workload after the flag went (output: $(tail -8 <<<"$out"))"
[[ $out != *aborted* ]] || fail "a client aborted after the flag went: $(grep -m3 aborted <<<"$out")"
tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/write_rw.out")
assert_ge "${tx:-0}" 1 "write transactions processed"
assert_eq "$(sql_primary "select count(*) from pgbench_history")" "$((h0 + tx))" \
	"pgbench_history rows written on the primary"

# --- pipeline mode: between two pipelines a connection is idle, still in
# pipeline mode (\startpipeline opens it before the first statement): it
# must move like any other idle connection, not be reset under pgbench.
cat >"$T/pipeline_select.sql" <<'EOF'
\set aid random(1, 100000)
\startpipeline
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT pg_is_in_recovery();
\endpipeline
EOF
select_run pipeline -M extended -f "$T/pipeline_select.sql"
echo "ok: pgbench -S (prepared, simple) and a pipeline moved to the replica; writes refused, then accepted"
