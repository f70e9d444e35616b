#!/usr/bin/env bash
# tools/demo.sh - `make demo`, the main job: a throw-away primary and
# streaming replica, a real multi-process, multi-threaded workload under
# pqshim, what the tool sees while it runs, and a short report checked
# against what the server saw.  Leaves nothing behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PQSHIM=$root/build/pqshim
BIN=/usr/lib/postgresql/15/bin
# shellcheck source=../tests/integration/pgbed.sh
. "$root/tests/integration/pgbed.sh"

work=$(mktemp -d /tmp/pqshim-demo.XXXXXX)
seg=demo-$$
cleanup() {
	set +e
	[ -n "${pids:-}" ] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
	pgbed_stop >/dev/null 2>&1
	rm -rf "$work" "/dev/shm/pqshim.$(id -u).$seg"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting a PostgreSQL 15 primary and a streaming replica (pg_basebackup -R)"
pgbed_start >"$work/bed.log" 2>&1 || { cat "$work/bed.log"; exit 1; }
echo "primary on $PQT_SOCKDIR port $PQT_PRIMARY_PORT, replica port $PQT_REPLICA_PORT," \
	"replica in recovery: $(_pgbed_sql "$PQT_REPLICA_PORT" 'select pg_is_in_recovery()')"

policy=$work/policy.ini
cat >"$policy" <<EOT
[tracking]
cross_thread = warn
leak_report = yes

[shim]
segment = $seg
log = $work/pqshim.log
EOT
chmod 600 "$policy"
say "policy $policy"
sed 's/^/    /' "$policy"

"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -i -q -s 2 >"$work/init.log" 2>&1

say "workload: 2 pgbench processes x 4 clients and a Python service of 6 threads, 6 s, all under pqshim"
secs=6
"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -n -c 4 -j 2 -T $secs -M prepared >"$work/pgb1.log" 2>&1 &
p1=$!
"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -n -c 4 -j 1 -T $secs -S >"$work/pgb2.log" 2>&1 &
p2=$!
"$PQSHIM" run -p "$policy" -- /usr/bin/python3 "$root/tools/demo_app.py" 6 $secs >"$work/app.log" 2>&1 &
p3=$!
pids="$p1 $p2 $p3"

peak=0
for i in $(seq 1 $((secs * 2))); do
	sleep 0.5
	n=$(_pgbed_sql "$PQT_PRIMARY_PORT" "select count(*) from pg_stat_activity
		where backend_type = 'client backend' and application_name in ('pgbench', 'demo_app')")
	[ "$n" -gt "$peak" ] && peak=$n
	if [ "$i" = $((secs)) ]; then
		say "pqshim stat, mid-run"
		"$PQSHIM" stat -p "$policy" | head -30
		"$PQSHIM" stat -p "$policy" --json >"$work/mid.json"
	fi
done
wait $pids
pids=

say "report"
final=$("$PQSHIM" stat -p "$policy" --json)
tx1=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb1.log")
tx2=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb2.log")
jq -r --arg peak "$peak" --arg tx1 "$tx1" --arg tx2 "$tx2" --arg app "$(cat "$work/app.log")" '
	"processes still registered   \(.processes | length)",
	"connections open now         \(.connections | length) (every program closed its own)",
	"statements / transactions    \(.totals.queries) / \(.totals.xacts) (counted by pqshim, kept after the programs exited)",
	"pgbench reported             \($tx1) + \($tx2) transactions",
	"\($app)",
	"connects / closes / leaked   \(.totals.connects) / \(.totals.closes) / \(.totals.leaked)",
	"cross-thread uses            \(.totals.cross_thread_uses) (two threads sharing one psycopg2 connection)",
	"peak backends on the primary \($peak) (sampled from pg_stat_activity)"' <<<"$final"
jq -r '"mid-run: " + ([.processes[] | "\(.program) pid \(.pid): \(.threads) threads, \(.connections) connections"] | join("; "))' "$work/mid.json"
echo "warnings the shim logged: $(grep -c . "$work/pqshim.log" 2>/dev/null || echo 0) (first: $(head -1 "$work/pqshim.log" 2>/dev/null))"
say "stopping the servers; nothing is left behind"
