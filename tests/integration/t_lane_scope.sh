#!/usr/bin/env bash
# t_lane_scope.sh: lanes with scope = process hold within each process.
# Policy: scope = process; lane "reports" (application_name=t_lanes_rep*,
# max_active = 1). Two processes of 3 report threads each (app
# t_lanes_rep1, t_lanes_rep2) loop 30 ms transactions for 4 s, each writing
# the server's now() and clock_timestamp(). From the rows: no two
# transactions of one process overlapped, the two processes' did (the
# lane's cap, like the cap, is per process with scope = process).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
TBL=t_lanes
lane_table $TBL
POL=$(policy_new lanes '[cap]
scope = process
wait_timeout = 20s

[lane "reports"]
match = application_name=t_lanes_rep*
max_active = 1
')
lane_load r1 "$POL" $TBL t_lanes_rep1 --threads 3 --seconds 4 --sleep 0.03
lane_load r2 "$POL" $TBL t_lanes_rep2 --threads 3 --seconds 4 --sleep 0.03
lane_wait r1 r2
for app in t_lanes_rep1 t_lanes_rep2; do
	assert_ge "$(q "select count(*) from $TBL where app = '$app'")" 20 "server: $app transactions"
	assert_eq "$(q "select count(*) from $TBL a, $TBL b where a.app = '$app' and b.app = '$app' and a.ctid < b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 0 \
		"server: overlapping pairs within $app (its lane's max_active = 1)"
done
assert_ge "$(q "select count(*) from $TBL a, $TBL b where a.app = 't_lanes_rep1' and b.app = 't_lanes_rep2' and a.t0 < b.t1 and a.t1 > b.t0")" 1 \
	"server: the two processes' reports overlapped (scope = process)"
echo "ok: scope = process: one report at a time in each process"
