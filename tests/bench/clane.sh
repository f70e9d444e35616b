#!/usr/bin/env bash
# tests/bench/clane.sh - what an exclusive lane costs across hosts (scope =
# cluster, the gate of lease_seg.h), measured from the server's rows: each
# transaction logs now() (its start) and clock_timestamp() (its end), and the
# client's time of asking (tests/clients/py_lane_load.py). Needs root (hosts
# are namespaces: tests/integration/cluster.sh); starts its own bed.
#
#   bash tests/bench/clane.sh [ROUNDS]      (default 3; prints a markdown table)
#
#  1. the exclusive's wait: 6 web threads loop 30 ms transactions (3 on each
#     of 2 hosts under scope = cluster, max_active = 8; all 6 on one host
#     under scope = host), and 8 migrations (lane "migrations", exclusive)
#     of 10 ms ask one after the other, 0.4 s apart, on the first host: the
#     time from asking to the migration's start on the server;
#  2. the gate's hand-off: two hosts each loop 15 exclusive 10 ms
#     transactions (no other work): the gap on the server between one
#     exclusive transaction's end and the next one's start, when the next is
#     of the other host (the gate moves through the coordinator) and when it
#     is of the same host (it stays).
set -euo pipefail
ROUNDS=${1:-3}
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
# shellcheck source=../integration/cluster.sh
. "$(dirname "$0")/../integration/cluster.sh"

coord_db pqb_clane_$$
LANE='[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
wait_timeout = 20s'
TBL=b_clane
host_up h1
host_up h2
pct() { sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END { if (!NR) { print "-"; exit } i = int(NR * p + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.1f", v[i] }'; }
waits() { # the migrations' waits, ms
	q "select extract(epoch from t0 - asked) * 1000 from $TBL where app like 'migrate-%'"
}
overlapped() {
	q "select count(*) from $TBL x, $TBL m where m.app like 'migrate-%' and x.app not like 'migrate-%'
		and x.t0 < m.t1 and x.t1 > m.t0"
}
migrations() { # HOST POLICY
	for i in 1 2 3 4 5 6 7 8; do
		host_load "$1" "mig$i" "$2" $TBL "migrate-$i" --count 1 --sleep 0.01 --delay "$(awk -v i="$i" 'BEGIN { print 0.6 + 0.4 * i }')"
	done
}
D=$T/bench
mkdir -p "$D"
for ((r = 1; r <= ROUNDS; r++)); do
	note "round $r/$ROUNDS"
	# 1. cluster
	POL=$(cluster_policy "bc$r" 8 20s "$LANE")
	lane_table $TBL
	host_load h1 web1 "$POL" $TBL web-h1 --threads 3 --seconds 5 --sleep 0.03
	host_load h2 web2 "$POL" $TBL web-h2 --threads 3 --seconds 5 --sleep 0.03
	migrations h1 "$POL"
	lane_wait web1 web2 mig1 mig2 mig3 mig4 mig5 mig6 mig7 mig8
	waits >>"$D/wait-cluster.ms"
	overlapped >>"$D/overlap-cluster"
	# 1. one host
	POL=$(policy_new "bh$r" "[cap]
scope = host
max_active = 8
wait_timeout = 20s
$LANE")
	lane_table $TBL
	host_load h1 web1 "$POL" $TBL web-h1 --threads 6 --seconds 5 --sleep 0.03
	migrations h1 "$POL"
	lane_wait web1 mig1 mig2 mig3 mig4 mig5 mig6 mig7 mig8
	waits >>"$D/wait-host.ms"
	overlapped >>"$D/overlap-host"
	# 2. the gate's hand-off
	POL=$(cluster_policy "bg$r" 8 20s "$LANE")
	lane_table $TBL
	host_load h1 g1 "$POL" $TBL migrate-h1 --count 15 --sleep 0.01
	host_load h2 g2 "$POL" $TBL migrate-h2 --count 15 --sleep 0.01
	lane_wait g1 g2
	q "select case when app = lag(app) over w then 'same' else 'cross' end,
			extract(epoch from t0 - lag(t1) over w) * 1000
		from $TBL window w as (order by t0)" | awk -F'|' -v d="$D" '$2 != "" { print $2 >> (d "/gap-" $1 ".ms") }'
	[ "$(overlap $TBL)" = 1 ] || fail "round $r: two exclusive transactions overlapped"
done
{
	echo "| exclusive lane, $ROUNDS rounds | count | median ms | p90 ms | max ms | overlapped (rows) |"
	echo "|---|---:|---:|---:|---:|---:|"
	for k in cluster host; do
		echo "| wait for the cluster/host, 6 web threads x 30 ms, \`scope = $k\` | $(wc -l <"$D/wait-$k.ms") | $(pct "$D/wait-$k.ms" 0.5) | $(pct "$D/wait-$k.ms" 0.9) | $(pct "$D/wait-$k.ms" 1) | $(paste -sd+ "$D/overlap-$k" | bc) |"
	done
	for k in cross same; do
		[ -s "$D/gap-$k.ms" ] || continue
		echo "| gate hand-off, next exclusive on the $([ $k = cross ] && echo other || echo same) host | $(wc -l <"$D/gap-$k.ms") | $(pct "$D/gap-$k.ms" 0.5) | $(pct "$D/gap-$k.ms" 0.9) | $(pct "$D/gap-$k.ms" 1) | - |"
	done
	echo
	echo "coordinator statements over the whole run: $(q "select pg_stat_force_next_flush(); select xact_commit from pg_stat_database where datname = '$CDB'" | tail -1) transactions"
}
