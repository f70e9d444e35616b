#!/usr/bin/env bash
# t_lane_cap.sh: a lane's max_active holds inside the global cap.
# Policy: max_active = 4; lane "reports" (application_name=t_lanec_rep*,
# max_active = 1). 3 report threads and 6 web threads (default lane)
# (tests/clients/py_lane_load.py) loop 30 ms transactions for 5 s, each
# writing the server's now() and clock_timestamp() at its start and end.
# From those rows: no two report transactions overlapped; at no
# transaction's start were more than 4 running (all lanes), and 4 were
# (the cap was used); reports ran beside web work. stat (JSON, table,
# Prometheus) and top show the lanes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
TBL=t_lanec
lane_table $TBL
POL=$(policy_new lanec '[cap]
max_active = 4
wait_timeout = 20s

[lane "reports"]
match = application_name=t_lanec_rep*
max_active = 1
')
lane_load web "$POL" $TBL t_lanec_web --threads 6 --seconds 5 --sleep 0.03
lane_load rep "$POL" $TBL t_lanec_rep --threads 3 --seconds 5 --sleep 0.03
lane_wait web rep
note "rows: $(q "select string_agg(app || ' ' || n, ', ') from (select app, count(*) n from $TBL group by app) s")"
assert_ge "$(q "select count(*) from $TBL where app = 't_lanec_rep'")" 20 "server: report transactions"
assert_eq "$(q "select count(*) from $TBL a, $TBL b where a.app = 't_lanec_rep' and b.app = 't_lanec_rep' and a.ctid < b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 0 \
	"server: pairs of report transactions that overlapped (lane max_active = 1)"
# running at each transaction's start, itself included: the most at once
peak=$(q "select max(n) from (select (select count(*) from $TBL b where b.t0 <= a.t0 and b.t1 > a.t0) n from $TBL a) s")
assert_le "$peak" 4 "server: transactions running at once, all lanes (global max_active = 4)"
assert_eq "$peak" 4 "server: the global cap was used"
assert_ge "$(q "select count(*) from $TBL a, $TBL b where a.app = 't_lanec_rep' and b.app = 't_lanec_web' and a.t0 < b.t1 and a.t1 > b.t0")" 1 \
	"server: reports ran beside web work"
S=$(stat_json "$POL")
assert_eq "$(jq -r '.lanes[] | select(.name == "reports") | "\(.max_active) \(.active) \(.waiting) \(.timeouts)"' <<<"$S")" "1 0 0 0" \
	"stat: the reports lane at the end (max_active active waiting timeouts)"
assert_ge "$(jq -r '.lanes[] | select(.name == "reports") | .waits' <<<"$S")" 1 "stat: reports waited"
assert_match "$("$PQSHIM" stat -p "$POL")" "lane reports +active 0/1 " "stat: the table's lane line"
assert_match "$("$PQSHIM" top -p "$POL" -n 1 -d 0.1)" "lane default +active 0/- " "top: the lanes"
assert_match "$("$PQSHIM" stat -p "$POL" --prometheus)" 'pqshim_lane_waits_total\{lane="reports"\} [1-9]' \
	"stat --prometheus: the lane label"
# the wait histogram has one series per lane, each lane's count its waits
P=$("$PQSHIM" stat -p "$POL" --prometheus)
assert_eq "$(grep -c '^pqshim_wait_seconds_count{lane="[a-z]*"} ' <<<"$P")" \
	"$(jq -r '.lanes | length' <<<"$S")" "prometheus: a wait histogram series per lane"
assert_eq "$(sed -n 's/^pqshim_wait_seconds_count{lane="reports"} //p' <<<"$P")" \
	"$(jq -r '.lanes[] | select(.name == "reports") | .waits' <<<"$S")" \
	"prometheus: the reports lane's wait count is its waits"
echo "ok: reports one at a time, $peak at once in all"
