#!/usr/bin/env bash
# t_clane_exclusive.sh: scope = cluster, an exclusive lane holds across hosts
# (the cluster's gate, lease_seg.h). Two simulated hosts h1, h2 under one
# policy (max_active = 8; lane "migrations", application_name=migrate-*,
# exclusive): 3 web threads on each host loop 30 ms transactions for 6 s
# (tests/clients/py_lane_load.py); after 2 s a migration on h1 runs one
# 300 ms transaction. Every transaction writes the server's now() (its start)
# and clock_timestamp() (its end) into a table on the primary: from those rows
# no transaction of either host overlapped the migration's, the migration
# started less than 0.5 s after it asked, and both hosts' web work ran before
# it and resumed after it (side by side across hosts otherwise). pqshim stat on
# h1 shows the lanes and the gate.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

cluster_bed clanex 8 20s '[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
wait_timeout = 20s'
"$PQSHIM" check "$POL" >/dev/null || fail "pqshim check refuses lanes with scope = cluster: $("$PQSHIM" check "$POL" 2>&1)"
host_up h1
host_up h2

host_load h1 web1 "$POL" $TBL web-h1 --threads 3 --seconds 6 --sleep 0.03
host_load h2 web2 "$POL" $TBL web-h2 --threads 3 --seconds 6 --sleep 0.03
host_load h1 mig "$POL" $TBL migrate-1 --count 1 --sleep 0.3 --delay 2
# stat once the migration has committed (its row is there), while the web
# loads still run: on a loaded machine its start may come later than 2 s
mig_done() { [ "$(q "select count(*) from $TBL where app = 'migrate-1'")" = 1 ]; }
wait_until 15 mig_done || fail "the migration did not commit within 15 s: $(tail -3 "$T/mig.err")"
host_stat h1 "$POL" >"$T/stat.json" || fail "pqshim stat on h1"
lane_wait web1 web2 mig

M="(select * from $TBL where app = 'migrate-1')"
note "migration: $(q "select 'asked ' || asked || ', ran ' || t0 || ' .. ' || t1 from $M m")"
note "rows: $(q "select string_agg(app || ' ' || n, ', ') from (select app, count(*) n from $TBL group by app) s")"
note "overlapping it (the first 3): $(q "select coalesce(string_agg(app || ' ' || t0 || '..' || t1, '; '), 'none') from (select x.* from $TBL x, $M m where x.app <> 'migrate-1' and x.t0 < m.t1 and x.t1 > m.t0 order by x.t0 limit 3) s")"
alone_and_resumed $TBL migrate-1 web-h1 web-h2
wait_s=$(q "select extract(epoch from t0 - asked) from $M m")
note "the migration waited $wait_s s"
assert_le "$wait_s" 0.5 "server: seconds from the migration's ask to its start"
assert_ge "$(q "select count(*) from $TBL a, $TBL b where a.app = 'web-h1' and b.app = 'web-h2' and a.t0 < b.t1 and a.t1 > b.t0")" 1 \
	"server: the hosts' web transactions ran side by side otherwise"
note "stat on h1: $(jq -c '{lanes: [.lanes[] | {name, exclusive, waits, timeouts}], gate: .cluster.gate}' "$T/stat.json")"
assert_eq "$(jq -r '[.lanes[].name] | join(" ")' "$T/stat.json")" "default migrations" "stat: the lanes on h1"
assert_eq "$(jq -r '.lanes[] | select(.name == "migrations") | "\(.exclusive) \(.waits)"' "$T/stat.json")" "true 1" \
	"stat: the migrations lane (exclusive, waits)"
assert_eq "$(jq -r '.cluster.gate | "\(.this_host) \(.exclusive_grants) \(.held_exclusive)"' "$T/stat.json")" "shared 1 0" \
	"stat on h1 after the migration: the gate (this host's hold, exclusive grants, held exclusive now)"
assert_le "$(jq -r .cluster.gate.last_wait_ms "$T/stat.json")" 500 "stat on h1: the migration's wait for the gate (ms)"
echo "ok: the migration ran alone in the cluster after waiting $wait_s s"
