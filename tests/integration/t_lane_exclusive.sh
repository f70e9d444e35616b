#!/usr/bin/env bash
# t_lane_exclusive.sh: an exclusive lane's transaction runs alone, waits only
# for the work already running, and the rest resumes after it.
# Policy: no global cap; lane "migrations" (application_name=migrate-*,
# exclusive), lane "reports" (application_name=t_lanex_rep*, max_active = 2);
# the rest (web) is the default lane. 4 web and 3 report threads
# (tests/clients/py_lane_load.py) loop 30 ms transactions for 6 s; after 2 s
# a migration runs one 300 ms transaction. Every transaction writes the
# server's now() (its start) and clock_timestamp() (its end) into a table:
# from those rows, no other transaction overlapped the migration's, the
# migration started less than 0.5 s after it asked, web and report work ran
# before and resumed after it; stat shows the lanes and counts the wait.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
TBL=t_lanex
lane_table $TBL
POL=$(policy_new lanex '[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
wait_timeout = 20s

[lane "reports"]
match = application_name=t_lanex_rep*
max_active = 2
')
"$PQSHIM" check "$POL" >/dev/null || fail "pqshim check refuses the lanes: $("$PQSHIM" check "$POL" 2>&1)"

lane_load web "$POL" $TBL t_lanex_web --threads 4 --seconds 6 --sleep 0.03
lane_load rep "$POL" $TBL t_lanex_rep --threads 3 --seconds 6 --sleep 0.03
lane_load mig "$POL" $TBL migrate-1 --count 1 --sleep 0.3 --delay 2
lane_wait web rep mig

M="(select * from $TBL where app = 'migrate-1')"
assert_eq "$(q "select count(*) from $M m")" 1 "server: the migration's transaction"
note "migration: $(q "select 'asked ' || asked || ', ran ' || t0 || ' .. ' || t1 from $M m")"
note "rows: $(q "select string_agg(app || ' ' || n, ', ') from (select app, count(*) n from $TBL group by app) s")"
assert_eq "$(q "select count(*) from $TBL x, $M m where x.app <> 'migrate-1' and x.t0 < m.t1 and x.t1 > m.t0")" 0 \
	"server: transactions that overlapped the migration's"
wait_s=$(q "select extract(epoch from t0 - asked) from $M m")
note "the migration waited $wait_s s"
assert_le "$wait_s" 0.5 "server: seconds from the migration's ask to its start"
for app in t_lanex_web t_lanex_rep; do
	assert_ge "$(q "select count(*) from $TBL x, $M m where x.app = '$app' and x.t1 < m.t0")" 10 \
		"server: $app transactions before the migration"
	assert_ge "$(q "select count(*) from $TBL x, $M m where x.app = '$app' and x.t0 > m.t1")" 10 \
		"server: $app transactions after the migration (resumed)"
done
# the work overlapped itself otherwise: the exclusivity is the lane's doing
assert_ge "$(q "select count(*) from $TBL a, $TBL b where a.app = 't_lanex_web' and b.app = 't_lanex_web' and a.ctid <> b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 1 \
	"server: web transactions ran side by side"

S=$(stat_json "$POL")
assert_eq "$(jq -r '[.lanes[].name] | join(" ")' <<<"$S")" "default migrations reports" "stat: the lanes"
assert_eq "$(jq -r '.lanes[] | select(.name == "migrations") | "\(.exclusive) \(.waits) \(.timeouts) \(.active)"' <<<"$S")" "true 1 0 0" \
	"stat: the migrations lane (exclusive, waits, timeouts, active)"
assert_eq "$(jq -r '.lanes[] | select(.name == "reports") | .max_active' <<<"$S")" 2 "stat: reports max_active"
echo "ok: the migration ran alone after waiting $wait_s s"
