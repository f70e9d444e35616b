#!/usr/bin/env bash
# tools/demo.sh - `make demo` / `pqshim demo`, the main job: a throw-away
# primary and streaming replica; two pgbench processes and a threaded Python
# service, 14 clients in all, under a cap of 3; the live view; read-only
# switched on mid-run and off again; a report checked against what the
# server saw, and a picture of the run.  The peak is the servers' own record:
# every transaction of the workload writes the server's clock_timestamp() at
# its start and at its end into demo_xact on the primary, inside the
# transaction, so each row's interval lies within the time its slot was
# held; the largest number of those intervals open at one instant (a sweep
# over their starts and ends) cannot exceed the cap, and since 14 clients
# queue for 3 slots with transactions of 10 ms, it reaches it in every run.  Leaves nothing behind but the
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
pids= serve=
cleanup() {
	set +e
	[ -n "$pids" ] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
	[ -n "$serve" ] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null
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
# psql, never under the shim, in the workload's database: sql SQL [PORT]
# (the primary's by default).
sql() { env -u LD_PRELOAD -u PQSHIM_POLICY "$BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -p "${2:-$PQT_PRIMARY_PORT}" -c "$1"; }
# Unlogged: written on the primary only; a standby cannot write, so the
# transactions that run on the replica while read-only is on log nothing.
sql "create unlogged table demo_xact (who text, t0 timestamptz, t1 timestamptz)"
wait_replica() { [ "$(sql "select count(*) from pg_class where relname = 'demo_xact'" "$PQT_REPLICA_PORT" 2>/dev/null)" = 1 ]; }
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
say "the workload: 2 pgbench processes x 4 clients and a Python service of 6 + 2 threads, ${secs} s, cap $cap"
# Each transaction notes the server's clock at its start (a transaction-local
# setting: it never leaves the server) and writes it with the clock at its
# end, before COMMIT; on the replica (read-only) it cannot, and skips that.
cat >"$work/xact.sql" <<'EOT'
\set aid random(1, 200000)
begin;
select pg_is_in_recovery()::int as ro, set_config('demo.t0', clock_timestamp()::text, true) as t0 \gset
select abalance from pgbench_accounts where aid = :aid;
select pg_sleep(0.01);
\if :ro = 0
insert into demo_xact values ('pgbench', current_setting('demo.t0')::timestamptz, clock_timestamp());
\endif
end;
EOT
"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -n -c 4 -j 4 -T $secs -M prepared -f "$work/xact.sql" >"$work/pgb1.log" 2>&1 &
p1=$!
"$PQSHIM" run -p "$policy" -- "$BIN/pgbench" -n -c 4 -j 4 -T $secs -f "$work/xact.sql" >"$work/pgb2.log" 2>&1 &
p2=$!
"$PQSHIM" run -p "$policy" -- /usr/bin/python3 "$here/demo_app.py" 6 $secs >"$work/app.log" 2>"$work/app.err" &
p3=$!
pids="$p1 $p2 $p3"
# Lanes (an exclusive migration in the middle of the run) and the cluster
# scope (two simulated hosts on one coordinator) join the workload here once
# pqshim has them.

# The tool never makes a segment: serve (which exits 1 on a missing one) and
# the samples start once the programs' shim has made it (at most 10 s).
seg_up() { "$PQSHIM" stat -p "$policy" --json >/dev/null 2>&1; }
for _ in $(seq 100); do seg_up && break; sleep 0.1; done
# pqshim serve, scraped once mid-run as Prometheus would.
"$PQSHIM" serve -p "$policy" --listen 127.0.0.1:0 >"$work/serve.out" 2>&1 &
serve=$!
# Sample five times a second what pqshim says and where the connections are
# (for the drain times and the picture; the peak comes from demo_xact).
start=$(now) switch_on="" drained_on="" switch_off="" drained_off="" scraped=""
echo "t active waiting on_primary on_replica" >"$work/samples.dat"
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
	onp=$(backends "$PQT_PRIMARY_PORT") onr=$(backends "$PQT_REPLICA_PORT")
	echo "$t $act $wai $onp $onr" >>"$work/samples.dat"
	if [ -n "$switch_on" ] && [ -z "$drained_on" ] && [ "$onp" = 0 ]; then
		drained_on=$(since "$switch_on")
		echo "    the primary has no connection of the workload left, ${drained_on}s after the switch"
	fi
	if [ -n "$switch_off" ] && [ -z "$drained_off" ] && [ "$onr" = 0 ]; then
		drained_off=$(since "$switch_off")
		echo "    the replica has no connection of the workload left, ${drained_off}s after the switch back"
	fi
	if [ ! -f "$work/top.txt" ] && awk -v t="$t" 'BEGIN { exit !(t > 3) }'; then
		say "pqshim top, one frame (t=${t}s)"
		"$PQSHIM" top -p "$policy" -n 1 >"$work/top.txt" 2>&1 || true
		sed -n '1,28p' "$work/top.txt"
	fi
	url=$(grep -o 'http://[^ ]*/metrics' "$work/serve.out" 2>/dev/null | head -n 1 || true)
	if [ -z "$scraped" ] && [ -n "$url" ] && awk -v t="$t" 'BEGIN { exit !(t > 12) }'; then
		scraped=1
		say "pqshim serve: $url, a few of its lines (t=${t}s)"
		curl -s --max-time 5 "$url" | grep -E '^pqshim_(active|waiting|waits_total|wait_seconds_(bucket\{lane="default",le="0.0(08192|32768|65536)"\}|count))' | sed 's/^/    /' || true
	fi
	sleep 0.2
done
wait $pids || true
pids=
kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null
serve=

# The peak, from the servers' own timestamps: a sweep over every start (+1)
# and end (-1), ends first at one same instant, so that intervals that only
# touch are not counted together.
sweep="with ev as (select t0 as t, 1 as d from demo_xact union all select t1, -1 from demo_xact),
	open as (select t, d, sum(d) over (order by t, d rows unbounded preceding) as n from ev)"
read -r peak logged at_cap < <(sql "$sweep,
	spans as (select n, coalesce(lead(t) over (order by t, d) - t, interval '0') as dt from open)
	select (select max(n) from open), (select count(*) from demo_xact),
	       round(100 * extract(epoch from sum(dt) filter (where n = $cap))
	             / nullif(extract(epoch from sum(dt) filter (where n > 0)), 0))
	from spans" | tr '|' ' ')
sql "$sweep select extract(epoch from t) - $start, n from open order by t, d" | tr '|' ' ' >"$work/server.dat"
# For the picture: the most open at once in each quarter of a second (a
# quarter starts with what was open when the last one ended).
awk -v w=0.25 '{ k = int($1 / w); if (NR == 1) b = k
	while (b < k) { print b * w, m; b++; m = cur }
	cur = $2; if (cur > m) m = cur }
	END { if (NR) { print b * w, m; print (b + 1) * w, m } }' "$work/server.dat" >"$work/server_peaks.dat"

final=$("$PQSHIM" stat -p "$policy" --json)
tx1=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb1.log")
tx2=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb2.log")
app=$(tail -n 1 "$work/app.log")
mkdir -p "$out"
cp "$work/samples.dat" "$work/server.dat" "$work/server_peaks.dat" "$out/"
{
	echo "pqshim demo, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
	echo
	echo "peak of transactions open at once, by the server's clock  $peak   (cap: max_active = $cap)"
	echo "    (each transaction's own start and end, written on the primary: $logged transactions,"
	echo "    $cap open ${at_cap:-0}% of the time; those on the replica while read-only cannot write theirs)"
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
	gnuplot <<EOT 2>/dev/null && echo && echo "picture of the run: $out/pqshim-demo.png (data: $out/server.dat, $out/samples.dat)"
set terminal pngcairo size 1000,560 font "sans,10"
set output "$out/pqshim-demo.png"
set title "pqshim demo: 14 clients under max_active = $cap; read-only from ${on_at}s to ${off_at}s" noenhanced
set xlabel "seconds"
set ylabel "transactions / connections"
set key below maxcols 2
set grid
set yrange [0:*]
set arrow from $on_at, graph 0 to $on_at, graph 1 nohead dt 2 lc rgb "red"
set arrow from $off_at, graph 0 to $off_at, graph 1 nohead dt 2 lc rgb "red"
plot "$out/server.dat" using 1:2 with steps lw 1 lc rgb "#c0c8d8" title "transactions open on the primary, at each start and end (server clock)", \
     "$out/server_peaks.dat" using 1:2 with steps lw 3 lc rgb "#1f77b4" title "... the most open at once in each 0.25 s", \
     "$out/samples.dat" using 1:2 with steps lw 2 lc rgb "#ff7f0e" title "slots held (pqshim stat)", \
     "" using 1:3 with steps lc rgb "#2ca02c" title "waiting for a slot (pqshim stat)", \
     "" using 1:4 with lines lw 2 lc rgb "#9467bd" title "connections on the primary", \
     "" using 1:5 with lines lw 2 lc rgb "#8c564b" title "connections on the replica", \
     $cap with lines dt 3 lc rgb "black" title "the cap"
EOT
fi
say "stopping the servers; nothing is left behind (the report and picture stay in $out)"
