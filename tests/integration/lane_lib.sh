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
