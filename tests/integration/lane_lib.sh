# shellcheck shell=bash
# tests/integration/lane_lib.sh - sourced (after lib.sh) by the t_lane_*.sh
# tests: a table of the server's own timestamps per transaction, and
# tests/clients/py_lane_load.py run under the shim.
#
#   lane_table TBL             (re)create TBL (app, asked, t0, t1) on the primary
#   lane_load NAME POLICY TBL APP ARGS...   start py_lane_load.py (--app APP
#                              --table TBL ARGS) under POLICY in the background;
#                              output in $T/NAME.out and $T/NAME.err
#   lane_wait NAME...          wait for each, expect exit status 0
#   q SQL                      one value from the primary
#   alone_and_resumed TBL MIG APP...   MIG's transaction ran alone, each APP
#                              before and after it (below)
LANELOAD=$PQT_ROOT/tests/clients/py_lane_load.py
declare -A LANE_PID
lane_table() {
	sql_primary "drop table if exists $1; create table $1 (app text, asked timestamptz, t0 timestamptz, t1 timestamptz)" >/dev/null
}
lane_load() {
	local n=$1 pol=$2 tbl=$3 app=$4
	shift 4
	timeout 60 "$PQSHIM" run -p "$pol" -- "$PY" "$LANELOAD" --app "$app" --table "$tbl" "$@" \
		>"$T/$n.out" 2>"$T/$n.err" &
	bg_track "$!"
	LANE_PID[$n]=$!
}
lane_wait() {
	local n rc
	for n in "$@"; do
		rc=0
		wait "${LANE_PID[$n]}" || rc=$?
		assert_eq "$rc" 0 "$n: exit status (stdout: $(tail -2 "$T/$n.out"), stderr: $(tail -3 "$T/$n.err"))"
	done
}
q() { sql_primary "$1"; }
# alone_and_resumed TBL MIG APP...: from TBL's rows, MIG's one transaction,
# no row of another app overlapping it, and each APP with 10 rows or more
# before it and 10 or more after it (resumed)
alone_and_resumed() {
	local tbl=$1 mig=$2 app m
	shift 2
	m="(select * from $tbl where app = '$mig')"
	assert_eq "$(q "select count(*) from $m m")" 1 "server: the transaction of $mig"
	assert_eq "$(q "select count(*) from $tbl x, $m m where x.app <> '$mig' and x.t0 < m.t1 and x.t1 > m.t0")" 0 \
		"server: transactions of any host that overlapped $mig's"
	for app; do
		assert_ge "$(q "select count(*) from $tbl x, $m m where x.app = '$app' and x.t1 < m.t0")" 10 \
			"server: $app transactions before $mig"
		assert_ge "$(q "select count(*) from $tbl x, $m m where x.app = '$app' and x.t0 > m.t1")" 10 \
			"server: $app transactions after $mig (resumed)"
	done
}
