#!/usr/bin/env bash
# tools/demo.sh - `make demo` / `pqshim demo`, the main job: a throw-away
# primary and streaming replica; two pgbench processes and a threaded Python
# service, 14 clients in all, under a cap of 3; the live view; read-only
# switched on mid-run and off again; a report checked against what the
# server saw, and a picture of the run.  Leaves nothing behind but the
# report and the picture (build/demo/ in the source tree, ./pqshim-demo/
# when installed; PQSHIM_DEMO_OUT overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BIN=/usr/lib/postgresql/15/bin
if [ -f "$here/pgbed.sh" ]; then     # installed: share/pqshim/{demo.sh,demo_app.py,pgbed.sh}
	PQSHIM=${PQSHIM:-$root/../bin/pqshim}
	out=${PQSHIM_DEMO_OUT:-$PWD/pqshim-demo}
	. "$here/pgbed.sh"
else                                  # the source tree
	PQSHIM=${PQSHIM:-$root/build/pqshim}
	out=${PQSHIM_DEMO_OUT:-$root/build/demo}
	# shellcheck source=../tests/integration/pgbed.sh
	. "$root/tests/integration/pgbed.sh"
fi

work=$(mktemp -d /tmp/pqshim-demo.XXXXXX)
chmod 0755 "$work"
seg=demo-$$
pids=
cleanup() {
	set +e
	[ -n "$pids" ] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
	pgbed_stop >/dev/null 2>&1
	rm -rf "$work" "/dev/shm/pqshim.$(id -u).$seg"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
# count of the demo's client backends on a port, optionally in some states
backends() {
	_pgbed_sql "$1" "select count(*) from pg_stat_activity where application_name in
		('pgbench', 'demo_app') and backend_type = 'client backend' ${2:-}"
}

say "starting a PostgreSQL 15 primary and a streaming replica (pg_basebackup -R)"
pgbed_start >"$work/bed.log" 2>&1 || { cat "$work/bed.log"; exit 1; }
echo "primary: socket $PQT_SOCKDIR port $PQT_PRIMARY_PORT (in recovery: $(_pgbed_sql "$PQT_PRIMARY_PORT" 'select pg_is_in_recovery()'))"
echo "replica: socket $PQT_SOCKDIR port $PQT_REPLICA_PORT (in recovery: $(_pgbed_sql "$PQT_REPLICA_PORT" 'select pg_is_in_recovery()'))"
"$BIN/pgbench" -i -q -s 2 >"$work/init.log" 2>&1
wait_replica() { [ "$(_pgbed_sql "$PQT_REPLICA_PORT" "select count(*) from pg_class where relname = 'pgbench_history'")" = 1 ]; }
for _ in $(seq 100); do wait_replica && break; sleep 0.1; done

policy=$work/policy.ini flag=$work/read-only.flag cap=3
cat >"$policy" <<EOT
[cap]
max_active = $cap
wait_timeout = 20s

[tracking]
cross_thread = warn

[read_only]
flag_file = $flag
primary = port=$PQT_PRIMARY_PORT
replica = port=$PQT_REPLICA_PORT
drain_timeout = 10s

[shim]
segment = $seg
log = $work/pqshim.log
EOT
chmod 600 "$policy"
say "the policy ($policy)"
grep -v '^$' "$policy" | sed 's/^/    /'

secs=16 on_at=5 off_at=10
say "the workload: 2 pgbench processes x 4 clients and a Python service of 6 threads, ${secs} s, cap $cap"
echo 'select pg_sleep(0.002); \set aid random(1, 200000)
select abalance from pgbench_accounts where aid = :aid;' >"$work/read.sql"
"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -n -c 4 -j 4 -T $secs -M prepared -f "$work/read.sql" >"$work/pgb1.log" 2>&1 &
p1=$!
"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -n -c 4 -j 4 -T $secs -S >"$work/pgb2.log" 2>&1 &
p2=$!
"$PQSHIM" run -p "$policy" -- /usr/bin/python3 "$here/demo_app.py" 6 $secs >"$work/app.log" 2>"$work/app.err" &
p3=$!
pids="$p1 $p2 $p3"

# Sample four times a second: what pqshim says and what the servers see.
start=$(now) peak=0 switch_on="" drained_on="" switch_off="" drained_off=""
echo "t active waiting server_active on_primary on_replica" >"$work/samples.dat"
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null || kill -0 $p3 2>/dev/null; do
	t=$(since "$start")
	if [ -z "$switch_on" ] && awk -v t="$t" -v a=$on_at 'BEGIN { exit !(t >= a) }'; then
		touch "$flag"; switch_on=$(now)
		say "t=${t}s: the flag file appears: read-only ON"
	fi
	if [ -z "$switch_off" ] && awk -v t="$t" -v a=$off_at 'BEGIN { exit !(t >= a) }'; then
		rm -f "$flag"; switch_off=$(now)
		say "t=${t}s: the flag file goes: read-only OFF"
	fi
	read -r act wai < <("$PQSHIM" stat -p "$policy" --json | jq -r '"\(.cap.active) \(.cap.waiting)"')
	# Busy backends that were all busy at one instant T0 (the primary's
	# statement start): pg_stat_activity is read one backend after the
	# other, and the two servers one after the other, so only those busy
	# since before T0 and still busy when read can be added up honestly.
	res=$(_pgbed_sql "$PQT_PRIMARY_PORT" "select statement_timestamp(), count(*)
		from pg_stat_activity where application_name in ('pgbench', 'demo_app')
		and backend_type = 'client backend' and xact_start < statement_timestamp()
		and (state = 'active' or state like 'idle in transaction%')")
	t0=${res%|*} srv=${res##*|}
	srv_r=$(backends "$PQT_REPLICA_PORT" "and xact_start < '$t0'::timestamptz
		and (state = 'active' or state like 'idle in transaction%')")
	onp=$(backends "$PQT_PRIMARY_PORT") onr=$(backends "$PQT_REPLICA_PORT")
	together=$((srv + srv_r))
	[ "$together" -gt "$peak" ] && peak=$together
	# for the picture: every busy backend each read saw (not all at once)
	seen=$(( $(backends "$PQT_PRIMARY_PORT" "and (state = 'active' or state like 'idle in transaction%')")
	       + $(backends "$PQT_REPLICA_PORT" "and (state = 'active' or state like 'idle in transaction%')") ))
	echo "$t $act $wai $seen $onp $onr" >>"$work/samples.dat"
	if [ -n "$switch_on" ] && [ -z "$drained_on" ] && [ "$onp" = 0 ]; then
		drained_on=$(since "$switch_on")
		echo "    the primary has no connection of the workload left, ${drained_on}s after the switch"
	fi
	if [ -n "$switch_off" ] && [ -z "$drained_off" ] && [ "$onr" = 0 ]; then
		drained_off=$(since "$switch_off")
		echo "    the replica has no connection of the workload left, ${drained_off}s after the switch back"
	fi
	if [ "$t" \> 3 ] && [ ! -f "$work/top.txt" ]; then
		say "pqshim top, one frame (t=${t}s)"
		"$PQSHIM" top -p "$policy" -n 1 >"$work/top.txt" 2>&1 || true
		sed -n '1,28p' "$work/top.txt"
	fi
	sleep 0.2
done
wait $pids || true
pids=

final=$("$PQSHIM" stat -p "$policy" --json)
tx1=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb1.log")
tx2=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb2.log")
app=$(tail -n 1 "$work/app.log")
mkdir -p "$out"
cp "$work/samples.dat" "$out/samples.dat"
{
	echo "pqshim demo, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
	echo
	echo "peak of transactions busy together, seen by the servers  $peak   (cap: max_active = $cap)"
	jq -r '"waits for a slot                              \(.cap.waits), p50 \(.cap.wait_ms_p50) ms, p99 \(.cap.wait_ms_p99) ms, timeouts \(.cap.timeouts)"' <<<"$final"
	echo "switch to read-only until the primary was empty   ${drained_on:-never} s"
	echo "switch back until the replica was empty           ${drained_off:-never} s"
	jq -r '"writes refused while read-only (SQLSTATE 25006) \(.writes_refused)   (writes done: \(.writes_ok), other errors: \(.errors))"' <<<"$app"
	jq -r '"connections redirected / moved live            \(.totals.redirects) / \(.totals.migrations)"' <<<"$final"
	jq -r '"statements / transactions counted by pqshim    \(.totals.queries) / \(.totals.xacts)"' <<<"$final"
	echo "transactions reported by the programs          pgbench $tx1 + $tx2, demo_app $(jq .transactions <<<"$app")"
	jq -r '"cross-thread uses (two threads, one connection) \(.totals.cross_thread_uses)",
	       "connections left open / leaked                 \(.connections | length) / \(.totals.leaked)"' <<<"$final"
} >"$out/report.txt"
say "report"
cat "$out/report.txt"

if command -v gnuplot >/dev/null; then
	gnuplot <<EOT 2>/dev/null && echo && echo "picture of the run: $out/pqshim-demo.png (data: $out/samples.dat)"
set terminal pngcairo size 1000,520 font "sans,10"
set output "$out/pqshim-demo.png"
set title "pqshim demo: 14 clients under max_active = $cap; read-only from ${on_at}s to ${off_at}s" noenhanced
set xlabel "seconds"
set ylabel "connections / slots"
set key outside right
set grid
set yrange [0:*]
set arrow from $on_at, graph 0 to $on_at, graph 1 nohead dt 2 lc rgb "red"
set arrow from $off_at, graph 0 to $off_at, graph 1 nohead dt 2 lc rgb "red"
plot "$out/samples.dat" using 1:2 with steps lw 2 title "slots held (pqshim)", \
     "" using 1:4 with steps lw 2 title "busy on the servers (as sampled)", \
     "" using 1:3 with steps title "waiting for a slot", \
     "" using 1:5 with lines lw 2 title "connections on the primary", \
     "" using 1:6 with lines lw 2 title "connections on the replica", \
     $cap with lines dt 3 lc rgb "black" title "the cap"
EOT
fi
say "stopping the servers; nothing is left behind (the report and picture stay in $out)"
