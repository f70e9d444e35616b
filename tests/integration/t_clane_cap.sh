#!/usr/bin/env bash
# t_clane_cap.sh: scope = cluster, a capped lane holds across hosts (its slots
# are keys LEASE_KEY_LANE(l, k) leased like the cluster's, lease_seg.h) inside
# the global cap.
#  - three simulated hosts, one policy: max_active = 4, lane "reports"
#    (application_name=rep-*, max_active = 1); on each host 2 report and 2 web
#    threads loop 20 ms transactions for 5 s (tests/clients/py_lane_load.py).
#    From the rows each transaction writes (the server's now() at its start,
#    clock_timestamp() at its end): never two report transactions at once in
#    the cluster and never more than 4 of any lane, both caps reached, and
#    every host ran reports (the lane's slot goes round).
#  - wait_timeout: the report lane's slot held by a psql on h1 (inside a
#    transaction), a report transaction on h2 fails after the lane's
#    wait_timeout (1 s) with SQLSTATE 53300 and the text that names the lane.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

cluster_bed clanec 4 20s '[lane "reports"]
match = application_name=rep-*
max_active = 1'
for h in h1 h2 h3; do host_up "$h"; done

# ============ the lane's cap and the global one across three hosts ==========
for h in h1 h2 h3; do
	host_load "$h" "rep$h" "$POL" $TBL "rep-$h" --threads 2 --seconds 5 --sleep 0.02
	host_load "$h" "web$h" "$POL" $TBL "web-$h" --threads 2 --seconds 5 --sleep 0.02
done
sleep 2.5
host_stat h1 "$POL" >"$T/stat.json" || fail "pqshim stat on h1"
nsenter -t "${HOST_PID[h1]}" -m -u -- "$PQSHIM" stat -p "$POL" >"$T/stat.txt"
lane_wait reph1 reph2 reph3 webh1 webh2 webh3
note "stat on h1 mid-run: $(jq -c '{lanes: [.lanes[] | {name, max_active, active, waiting}], cluster: .cluster.lanes}' "$T/stat.json")"
assert_eq "$(jq -r '.lanes[] | select(.name == "reports") | .max_active' "$T/stat.json")" 1 "stat: the reports lane's max_active (the cluster's)"
assert_eq "$(jq -r '.cluster.lanes[] | "\(.name) \(.max_active)"' "$T/stat.json")" "reports 1" "stat: the cluster's lanes"
assert_le "$(jq -r '.cluster.lanes[0].held' "$T/stat.json")" 1 "stat: the reports lane's slots held in the cluster"
assert_eq "$(jq -r .cluster.gate "$T/stat.json")" null "stat: no gate without an exclusive lane"
grep -q '^  lane reports  *held  *[01]/1 in the cluster, this host leases [01]$' "$T/stat.txt" ||
	fail "stat table: no line for the reports lane: $(cat "$T/stat.txt")"
note "rows: $(q "select string_agg(app || ' ' || n, ', ' order by app) from (select app, count(*) n from $TBL group by app) s")"
rep=$(overlap "(select * from $TBL where app like 'rep-%') r")
all=$(overlap $TBL)
note "server-side peaks: reports lane $rep, all lanes $all"
assert_eq "$rep" 1 "server: report transactions at once across the hosts (lane max_active = 1)"
assert_le "$all" 4 "server: transactions at once across the hosts (max_active = 4)"
assert_eq "$all" 4 "server: the global cap is reached"
for h in h1 h2 h3; do
	assert_ge "$(q "select count(*) from $TBL where app = 'rep-$h'")" 5 "server: report transactions of $h"
	assert_ge "$(q "select count(*) from $TBL where app = 'web-$h'")" 20 "server: web transactions of $h"
done

# ============ the lane's wait_timeout names the lane ========================
POL=$(cluster_policy clanet 4 20s '[lane "reports"]
match = application_name=rep-*
max_active = 1
wait_timeout = 1s')
PGAPPNAME=rep-hold held_start hold on_host h1 env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" \
	"$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres pqt
held_send hold "begin;" "select 'held';"
held() { grep -q held "$T/hold.out"; }
wait_until 10 held || fail "h1's psql never ran: $(cat "$T/hold.err")"
h1_holds() { [ "$(host_stat h1 "$POL" | jq -r '.lanes[] | select(.name == "reports") | .active')" = 1 ]; }
wait_until 10 h1_holds || fail "h1 never held the reports lane: $(host_stat h1 "$POL" | jq -c .lanes)"
host_load h2 late "$POL" $TBL rep-late --count 1 --sleep 0
rc=0
wait "${LANE_PID[late]}" || rc=$?
assert_eq "$rc" 1 "h2's report transaction: exit status ($(cat "$T/late.out"))"
msg=$(grep '^ERROR' "$T/late.out")
note "h2: $msg"
assert_match "$msg" '^ERROR 53300 pqshim: no slot free in lane "reports" after waiting 1\.[0-9][0-9] s \(max_active = 1, wait_timeout = 1s, policy .*/clanet\.ini\)$' \
	"h2's error: 53300 naming the lane, its cap and wait_timeout"
assert_eq "$(q "select count(*) from $TBL where app = 'rep-late'")" 0 "server: h2's report transaction never ran"
held_send hold "commit;" '\q'
echo "ok: the reports lane ran one at a time across three hosts (peak $rep, global $all), its wait_timeout names it"
