#!/usr/bin/env bash
# t_demo.sh: `make demo` (tools/demo.sh) runs to its end and its report says
# what the servers saw. Shortened (PQSHIM_DEMO_SECONDS=8: the same events at
# the same places of a run half as long), on servers of its own, its report
# and picture in $T/demo. From the report: the peak of transactions open at
# once on the primary (the sweep over their clock_timestamp() rows) is the
# cap, 3; the "reports" lane's peak is its max_active, 1; the exclusive
# migration has its row, no other row overlaps it, it waited under 0.5 s and
# every kind of work ran again after it; the two simulated hosts (as root)
# reached the cluster's cap, 4, and neither had less than a quarter of the
# transactions; the exclusive migration on demo-a waited under 0.5 s, no row
# of either host overlaps it, both hosts ran before and after it. The
# picture was drawn; nothing of the demo is left running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

OUT=$T/demo
rc=0
PQSHIM_DEMO_SECONDS=8 PQSHIM_DEMO_OUT=$OUT timeout -k 5 90 bash "$PQT_ROOT/tools/demo.sh" \
	>"$T/demo.out" 2>&1 || rc=$?
assert_eq "$rc" 0 "demo.sh: exit status ($(tail -n 5 "$T/demo.out"))"
R=$OUT/report.txt
[ -s "$R" ] || fail "no report: $(tail -n 5 "$T/demo.out")"
note "report: $(cat "$R")"
# the figure after a line's fixed words: field LINE-REGEX N
field() { awk -v re="$1" -v n="$2" '$0 ~ re { print $n; exit }' "$R"; }

assert_eq "$(field '^peak of transactions open at once, by the server' 11)" 3 "report: server-side peak (cap 3)"
assert_match "$(grep '^peak of' "$R")" '\(cap: max_active = 3\)$' "report: the cap named"
assert_eq "$(field '^lane "reports": peak' 11)" 1 "report: the reports lane's server-side peak (max_active = 1)"
assert_match "$(grep '^lane "migration"' "$R")" '^lane "migration" \(exclusive\): asked at t=[0-9.]+s, waited [0-9.]+ s, ran from' \
	"report: the migration's line"
assert_le "$(field '^lane "migration"' 8)" 0.5 "report: seconds the migration waited"
assert_eq "$(field 'transactions that overlapped it, by the server' 9)" 0 \
	"report: transactions that overlapped the migration"
resumed=$(grep 'transactions after it (work resumed)' "$R" | sed 's/.*resumed) *//')
for who in pgbench demo_app demo_report; do
	n=$(tr ',' '\n' <<<"$resumed" | awk -v w="$who" '$1 == w { print $2 }')
	assert_ge "${n:-0}" 10 "report: $who transactions after the migration ($resumed)"
done
assert_match "$(grep '^connections left open' "$R")" ' 0 / 0$' "report: connections left open / leaked"

if [ "$(id -u)" = 0 ]; then
	assert_eq "$(field '^cluster: peak open at once over both hosts' 13)" 4 "report: the cluster's server-side peak (cap 4)"
	for h in demo-a demo-b; do
		pct=$(grep "^    host $h: " "$R" | sed -n 's/.* transactions (\([0-9]*\)%).*/\1/p')
		assert_ge "${pct:-0}" 25 "report: host $h's share of the transactions (%)"
	done
	assert_match "$(grep '^cluster: lane "migration"' "$R")" \
		'^cluster: lane "migration" \(exclusive\) on demo-a: asked at t=[0-9.]+s, waited [0-9.]+ s, ran from' \
		"report: the cluster migration's line"
	assert_le "$(field '^cluster: lane "migration"' 11)" 0.5 "report: seconds the cluster migration waited"
	assert_eq "$(field 'transactions of either host that overlapped it' 12)" 0 \
		"report: transactions of either host that overlapped the cluster migration"
	around=$(grep 'transactions before / after it, per host' "$R" | sed 's/.*resumed) *//')
	for h in demo-a demo-b; do
		read -r before after < <(tr ',' '\n' <<<"$around" | awk -v h="$h" '$1 == h { print $2, $4 }')
		assert_ge "${before:-0}" 10 "report: host $h's transactions before the cluster migration ($around)"
		assert_ge "${after:-0}" 10 "report: host $h's transactions after the cluster migration ($around)"
	done
else
	grep -q '^cluster: skipped' "$R" || fail "report: not root, the cluster part should say it was skipped"
fi
[ -s "$OUT/pqshim-demo.png" ] || ! command -v gnuplot >/dev/null || fail "no picture"
# nothing left: its scratch dir and its servers' dir gone, no process of either
work=$(sed -n 's/.*the policy (\(.*\)\/policy.ini).*/\1/p' "$T/demo.out")
bed=$(sed -n 's/^primary: socket \(.*\)\/sock port.*/\1/p' "$T/demo.out")
[ -n "$work" ] && [ -n "$bed" ] || fail "the demo did not name its dirs: $(head -n 12 "$T/demo.out")"
for d in "$work" "$bed"; do
	[ ! -e "$d" ] || fail "the demo left $d behind"
	assert_eq "$(pgrep -f "$d" || true)" "" "processes of the demo left running ($d)"
done
echo "ok: the demo's report: peak 3 of 3, reports 1 of 1, the migration alone, the cluster 4 of 4 and its migration alone"
