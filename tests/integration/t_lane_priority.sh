#!/usr/bin/env bash
# t_lane_priority.sh: waiters of a higher priority go first.
# Policy: max_active = 1; lane "web" (application_name=t_lanep_hi*,
# priority = 10); the rest is the default lane (priority 0). 3 threads of
# each (tests/clients/py_lane_load.py) loop 10 ms transactions for 5 s,
# each writing the server's now() and clock_timestamp() into a table. From
# those rows: the web lane completed at least 3 times the transactions of
# the default lane, and no two transactions overlapped (the cap held).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
LOAD=$PQT_ROOT/tests/clients/py_lane_load.py
TBL=t_lanep
sql_primary "drop table if exists $TBL; create table $TBL (app text, asked timestamptz, t0 timestamptz, t1 timestamptz)" >/dev/null
POL=$(policy_new lanep '[cap]
max_active = 1
wait_timeout = 30s

[lane "web"]
match = application_name=t_lanep_hi*
priority = 10
')
run_load() { # NAME APP ARGS...
	local n=$1 app=$2
	shift 2
	"$PQSHIM" run -p "$POL" -- "$PY" "$LOAD" --app "$app" --table $TBL "$@" >"$T/$n.out" 2>"$T/$n.err" &
	bg_track "$!"
	eval "pid_$n=$!"
}
run_load hi t_lanep_hi --threads 3 --seconds 5 --sleep 0.01
run_load lo t_lanep_lo --threads 3 --seconds 5 --sleep 0.01
for n in hi lo; do
	rc=0
	wait "$(eval echo "\$pid_$n")" || rc=$?
	assert_eq "$rc" 0 "$n: exit status (stdout: $(tail -2 "$T/$n.out"), stderr: $(tail -3 "$T/$n.err"))"
done
q() { sql_primary "$1"; }
hi=$(q "select count(*) from $TBL where app = 't_lanep_hi'")
lo=$(q "select count(*) from $TBL where app = 't_lanep_lo'")
note "server: web (priority 10) $hi, default $lo transactions"
assert_ge "$hi" 100 "server: web transactions"
assert_ge "$hi" "$((3 * lo))" "server: web transactions (>= 3 x the default lane's $lo)"
assert_eq "$(q "select count(*) from $TBL a, $TBL b where a.ctid < b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 0 \
	"server: pairs of transactions that overlapped (max_active = 1)"
echo "ok: priority 10: $hi transactions, default: $lo"
