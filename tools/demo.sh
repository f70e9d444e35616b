#!/usr/bin/env bash
# tools/demo.sh - `make demo` / `pqshim demo`, the main job: a throw-away
# primary and streaming replica; two pgbench processes and a threaded Python
# service, 16 clients in all, under a cap of 3, two of them in a lane of one
# slot ("reports"); the live view; read-only switched on mid-run and off
# again; an exclusive lane's migration (psql) started in the middle, which
# must run alone; then two simulated hosts (private mount and UTS
# namespaces, as root) under one cap of scope = cluster, where a migration
# on one host must run alone across both; a report checked
# against what the server saw, and a picture of the run.  PQSHIM_DEMO_SECONDS
# (default 16) sets the first part's length, its events keep their places
# (the demo's test runs it shorter).  The peak is the servers' own record:
# every transaction of the workload writes the server's clock_timestamp() at
# its start and at its end into demo_xact on the primary, inside the
# transaction, so each row's interval lies within the time its slot was
# held; the largest number of those intervals open at one instant (a sweep
# over their starts and ends) cannot exceed the cap, and since 14 clients
# queue for 3 slots with transactions of 10 ms, it reaches it in every run.
# The same sweep over the reports' rows gives their lane's peak, and the
# migration's row, set against every other row, shows whether anything ran
# beside it.  Leaves nothing behind but the
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
pids= serve= hosts=
cleanup() {
	local rc=$?
	set +e
	if [ "$rc" != 0 ]; then # what the servers and the shim said last
		for f in "${PQT_PGTMP:-/nonexistent}/primary.log" "$work/pqshim.log" "$work/cluster.log"; do
			[ -s "$f" ] && echo "---- the last lines of $f ----" >&2 && tail -n 12 "$f" >&2
		done
	fi
	[ -n "$pids" ] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
	[ -n "$serve" ] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null
	[ -n "$hosts" ] && kill $hosts 2>/dev/null && wait $hosts 2>/dev/null
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
		('pgbench', 'demo_app', 'demo_report') and backend_type = 'client backend' ${2:-}"
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
# (asked: when the migration's client asked for its slot, by its clock)
sql "create unlogged table demo_xact (who text, t0 timestamptz, t1 timestamptz, asked timestamptz)"
wait_replica() { [ "$(sql "select count(*) from pg_class where relname = 'demo_xact'" "$PQT_REPLICA_PORT" 2>/dev/null)" = 1 ]; }
for _ in $(seq 100); do wait_replica && break; sleep 0.1; done

policy=$work/policy.ini flag=$work/read-only.flag cap=3
cat >"$policy" <<EOT
[cap]
max_active = $cap
wait_timeout = 20s

[lane "migration"]
match = application_name=migrate*
exclusive = yes

[lane "reports"]
match = application_name=demo_report
max_active = 1

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

secs=${PQSHIM_DEMO_SECONDS:-16}
at() { awk -v s="$secs" -v f="$1" 'BEGIN { printf "%.2f", s * f / 16 }'; } # where 16 s would have it
on_at=$(at 5) off_at=$(at 10) mig_at=$(at 12)
say "the workload: 2 pgbench processes x 4 clients and a Python service of 6 + 2 threads and 2 reports, ${secs} s, cap $cap"
echo "    read-only from t=${on_at}s to t=${off_at}s; at t=${mig_at}s a migration (psql, lane \"migration\", exclusive)"
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
"$PQSHIM" run -p "$policy" -- /usr/bin/python3 "$here/demo_app.py" 6 $secs 2 >"$work/app.log" 2>"$work/app.err" &
p3=$!
pids="$p1 $p2 $p3"
# The migration: one transaction that changes pgbench_accounts, which every
# other transaction reads (ALTER TABLE takes its ACCESS EXCLUSIVE lock: alone,
# it gets it at once), and works for 0.3 s.  It notes when it asked (its
# clock, before BEGIN, where the shim makes it wait) and logs its row too.
cat >"$work/migration.sql" <<'EOT'
\set asked `date +%s.%N`
begin;
select set_config('demo.t0', clock_timestamp()::text, true) is null as no \gset
alter table pgbench_accounts add column if not exists migrated boolean;
select pg_sleep(0.3);
insert into demo_xact values ('migration', current_setting('demo.t0')::timestamptz, clock_timestamp(), to_timestamp(:asked));
end;
EOT

# The tool never makes a segment: serve (which exits 1 on a missing one) and
# the samples start once the programs' shim has made it (at most 10 s).
seg_up() { "$PQSHIM" stat -p "$policy" --json >/dev/null 2>&1; }
for _ in $(seq 100); do seg_up && break; sleep 0.1; done
# pqshim serve, scraped once mid-run as Prometheus would.
"$PQSHIM" serve -p "$policy" --listen 127.0.0.1:0 >"$work/serve.out" 2>&1 &
serve=$!
# Sample five times a second what pqshim says and where the connections are
# (for the drain times and the picture; the peak comes from demo_xact).
start=$(now) switch_on="" drained_on="" switch_off="" drained_off="" scraped="" mig=""
echo "t active waiting on_primary on_replica" >"$work/samples.dat"
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null || kill -0 $p3 2>/dev/null; do
	t=$(since "$start")
	if [ -z "$mig" ] && awk -v t="$t" -v a="$mig_at" 'BEGIN { exit !(t >= a) }'; then
		PGAPPNAME=migrate-demo "$PQSHIM" run -p "$policy" -- "$BIN/psql" -X -q -v ON_ERROR_STOP=1 \
			-f "$work/migration.sql" >"$work/migration.log" 2>&1 &
		mig=$!
		pids="$pids $mig"
		say "t=${t}s: the migration starts (psql, application_name migrate-demo: lane \"migration\", exclusive)"
	fi
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
	if [ ! -f "$work/top.txt" ] && awk -v t="$t" -v a="$(at 3)" 'BEGIN { exit !(t > a) }'; then
		say "pqshim top, one frame (t=${t}s)"
		"$PQSHIM" top -p "$policy" -n 1 >"$work/top.txt" 2>&1 || true
		sed -n '1,32p' "$work/top.txt"
	fi
	url=$(grep -o 'http://[^ ]*/metrics' "$work/serve.out" 2>/dev/null | head -n 1 || true)
	if [ -z "$scraped" ] && [ -n "$url" ] && awk -v t="$t" -v a="$(at 13)" 'BEGIN { exit !(t > a) }'; then
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
# The peaks, from the servers' own timestamps: a sweep over every start (+1)
# and end (-1) of TABLE's rows WHERE, ends first at one same instant, so that
# intervals that only touch are not counted together.
sweep() { # TABLE WHERE
	echo "with ev as (select t0 as t, 1 as d from $1 where $2 union all select t1, -1 from $1 where $2),
	open as (select t, d, sum(d) over (order by t, d rows unbounded preceding) as n from ev)"
}
peak_of() { sql "$(sweep "$1" "$2") select coalesce(max(n), 0) from open"; } # TABLE WHERE
# For the picture: TABLE's rows WHERE open at each start and end (seconds
# from T0), and the most open at once in each quarter of a second (a
# quarter starts with what was open when the last one ended): OUT.dat and
# OUT_peaks.dat.
curve() { # TABLE WHERE T0 OUT
	sql "$(sweep "$1" "$2") select extract(epoch from t) - $3, n from open order by t, d" | tr '|' ' ' >"$4.dat"
	awk -v w=0.25 '{ k = int($1 / w); if (NR == 1) b = k
		while (b < k) { print b * w, m; b++; m = cur }
		cur = $2; if (cur > m) m = cur }
		END { if (NR) { print b * w, m; print (b + 1) * w, m } }' "$4.dat" >"$4_peaks.dat"
}
read -r peak logged at_cap < <(sql "$(sweep demo_xact true),
	spans as (select n, coalesce(lead(t) over (order by t, d) - t, interval '0') as dt from open)
	select (select max(n) from open), (select count(*) from demo_xact),
	       round(100 * extract(epoch from sum(dt) filter (where n = $cap))
	             / nullif(extract(epoch from sum(dt) filter (where n > 0)), 0))
	from spans" | tr '|' ' ')
curve demo_xact true "$start" "$work/server"
rpeak=$(peak_of demo_xact "who = 'demo_report'")
rlogged=$(sql "select count(*) from demo_xact where who = 'demo_report'")
curve demo_xact "who = 'demo_report'" "$start" "$work/reports"
# The migration against every other row: how many overlapped it, how long it
# waited for its slot (its ask to its start), the gaps to the last
# transaction before it and the first after it, what ran after it.
M="(select * from demo_xact where who = 'migration') m"
read -r mrows moverlap mwait mstart mend mbefore mafter < <(sql "select (select count(*) from $M),
	(select count(*) from demo_xact x, $M where x.who <> 'migration' and x.t0 < m.t1 and x.t1 > m.t0),
	round(extract(epoch from m.t0 - m.asked)::numeric, 3),
	round((extract(epoch from m.t0) - $start)::numeric, 2), round((extract(epoch from m.t1) - $start)::numeric, 2),
	round(extract(epoch from m.t0 - (select max(t1) from demo_xact x where x.who <> 'migration' and x.t1 <= m.t0))::numeric, 4),
	round(extract(epoch from (select min(t0) from demo_xact x where x.who <> 'migration' and x.t0 >= m.t1) - m.t1)::numeric, 4)
	from $M union all select 0, null, null, null, null, null, null limit 1" | tr '|' ' ')
mresumed=$(sql "select string_agg(w || ' ' || coalesce(n, 0), ', ' order by w) from
	(values ('pgbench'), ('demo_app'), ('demo_report')) v(w) left join
	(select split_part(x.who, ' ', 1) as who, count(*) as n from demo_xact x, $M
	 where x.who <> 'migration' and x.t0 >= m.t1 group by 1) a on a.who = v.w")

final=$("$PQSHIM" stat -p "$policy" --json)
tx1=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb1.log")
tx2=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgb2.log")
app=$(tail -n 1 "$work/app.log")

# ---- part 2: two simulated hosts, one cap for both (scope = cluster) ----
# Each host is a private mount namespace with its own tmpfs on /dev/shm (so
# its own pqshim segment) and its own UTS namespace (its host name, which
# names it to the coordinator): that needs root.  The coordinator is a
# database of the primary; the slots are advisory locks there.
ccap=4 csecs=$(awk -v s="$secs" 'BEGIN { printf "%.0f", s * 6 / 16 }') chosts="demo-a demo-b" cluster=""
if [ "$(id -u)" = 0 ] && unshare --mount --uts -- true 2>/dev/null; then
	cluster=1
	sql "create database demo_coord" >/dev/null
	cpolicy=$work/cluster.ini
	cat >"$cpolicy" <<EOT
[cap]
scope = cluster
coordinator = host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=demo_coord user=postgres
max_active = $ccap
wait_timeout = 20s

[lane "migration"]
match = application_name=migrate*
exclusive = yes

[shim]
segment = democ-$$
log = $work/cluster.log
EOT
	chmod 600 "$cpolicy"
	say "part 2: two hosts, one cap: scope = cluster ($cpolicy)"
	grep -v '^$' "$cpolicy" | sed 's/^/    /'
	cmig_at=$(awk -v s="$csecs" 'BEGIN { printf "%.2f", s * 0.4 }')
	echo "    hosts $chosts (each its own mount namespace, /dev/shm and host name), 4 pgbench clients each, ${csecs} s;"
	echo "    at t=${cmig_at}s a migration on demo-a (psql, lane \"migration\", exclusive: across both hosts)"
	sql "create unlogged table demo_cluster (host text, t0 timestamptz, t1 timestamptz, asked timestamptz)"
	cat >"$work/cx.sql" <<'EOT'
\set aid random(1, 200000)
begin;
select abalance from pgbench_accounts where aid = :aid;
select pg_sleep(0.02);
insert into demo_cluster values (current_setting('application_name'), now(), clock_timestamp());
end;
EOT
	# The migration, as in part 1 (its row's start is the server's now(),
	# as the hosts' rows: the widest its interval can be).
	cat >"$work/cmig.sql" <<'EOT'
\set asked `date +%s.%N`
begin;
alter table pgbench_accounts add column if not exists cluster_migrated boolean;
select pg_sleep(0.3);
insert into demo_cluster values ('migration', now(), clock_timestamp(), to_timestamp(:asked));
end;
EOT
	# one host: its own /dev/shm and name, 4 pgbench clients under the
	# policy, the migration at MIG_AT (if set), and halfway through what
	# pqshim stat shows there
	cat >"$work/host.sh" <<'EOT'
mount -t tmpfs -o mode=1777 tmpfs /dev/shm && hostname "$1" || exit 1
PGAPPNAME=$1 "$PQSHIM" run -p "$CPOLICY" -- "$BIN/pgbench" -n -c 4 -j 4 -T "$CSECS" -f "$WORK/cx.sql" >"$WORK/$1.pgb" 2>&1 &
pgb=$! mig=
if [ -n "$MIG_AT" ]; then
	(sleep "$MIG_AT" && PGAPPNAME=migrate-cluster "$PQSHIM" run -p "$CPOLICY" -- "$BIN/psql" -X -q \
		-v ON_ERROR_STOP=1 -f "$WORK/cmig.sql" >"$WORK/cmig.log" 2>&1) &
	mig=$!
fi
sleep "$(awk -v s="$CSECS" 'BEGIN { print s / 2 }')"
"$PQSHIM" stat -p "$CPOLICY" >"$WORK/$1.stat" 2>&1
wait $pgb || { echo "host $1: pgbench failed:" >&2; tail -n 5 "$WORK/$1.pgb" >&2; exit 1; }
[ -z "$mig" ] || wait $mig || { echo "host $1: the migration failed:" >&2; tail -n 3 "$WORK/cmig.log" >&2; exit 1; }
EOT
	cstart=$(now)
	for h in $chosts; do
		hmig=$([ "$h" = demo-a ] && echo "$cmig_at" || true)
		PQSHIM=$PQSHIM CPOLICY=$cpolicy BIN=$BIN CSECS=$csecs WORK=$work MIG_AT=$hmig \
			unshare --mount --uts -- sh "$work/host.sh" "$h" &
		hosts="$hosts $!"
	done
	wait $hosts || true
	hosts=
	cpeak=$(peak_of demo_cluster true)
	curve demo_cluster true "$cstart" "$work/cluster"
	for h in $chosts; do curve demo_cluster "host = '$h'" "$cstart" "$work/cluster_$h"; done
	# The migration against both hosts' rows: how many overlapped it, its
	# wait (its ask to its start), each host's rows before and after it.
	CM="(select * from demo_cluster where host = 'migration') m"
	read -r cmrows cmoverlap cmothers cmwait cmstart cmend < <(sql "select (select count(*) from $CM),
		(select count(*) from demo_cluster x, $CM where x.host <> 'migration' and x.t0 < m.t1 and x.t1 > m.t0),
		(select count(*) from demo_cluster where host <> 'migration'),
		round(extract(epoch from m.t0 - m.asked)::numeric, 3),
		round((extract(epoch from m.t0) - $cstart)::numeric, 2), round((extract(epoch from m.t1) - $cstart)::numeric, 2)
		from $CM union all select 0, null, null, null, null, null limit 1" | tr '|' ' ')
	cmhosts=$(sql "select string_agg(h || ' ' || (select count(*) from demo_cluster x, $CM where x.host = h and x.t1 <= m.t0)
		|| ' / ' || (select count(*) from demo_cluster x, $CM where x.host = h and x.t0 >= m.t1), ', ' order by h)
		from unnest(string_to_array('$chosts', ' ')) h")
	echo "    pqshim stat on demo-a, halfway:"
	grep -E '^(cap|cluster|  host)' "$work/demo-a.stat" | sed 's/^/    /' || sed 's/^/    /' "$work/demo-a.stat"
else
	say "part 2: two hosts, one cap (scope = cluster): skipped"
	echo "    simulating two hosts needs private mount namespaces (unshare --mount --uts), that is root:"
	echo "    run \`make demo\` as root to see it"
fi

mkdir -p "$out"
cp "$work"/*.dat "$out/"
{
	echo "pqshim demo, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
	echo
	echo "peak of transactions open at once, by the server's clock  $peak   (cap: max_active = $cap)"
	echo "    (each transaction's own start and end, written on the primary: $logged transactions,"
	echo "    $cap open ${at_cap:-0}% of the time; those on the replica while read-only cannot write theirs)"
	echo "lane \"reports\": peak open at once, by the server's clock $rpeak   (lane max_active = 1; $rlogged transactions, 2 clients)"
	if [ "${mrows:-0}" = 1 ]; then
		echo "lane \"migration\" (exclusive): asked at t=$(awk -v a="$mstart" -v w="$mwait" 'BEGIN { printf "%.2f", a - w }')s, waited $mwait s, ran from t=${mstart}s to t=${mend}s"
		echo "    transactions that overlapped it, by the server's clock   $moverlap   (of $((logged - 1)); gaps: ${mbefore} s after the last before it, ${mafter} s before the first after it)"
		echo "    transactions after it (work resumed)                      $mresumed"
	else
		echo "lane \"migration\" (exclusive): no row of the migration's transaction ($(tail -n 2 "$work/migration.log" | tr '\n' ' '))"
	fi
	jq -r '"waits for a slot                              \(.cap.waits), p50 \(.cap.wait_ms_p50) ms, p99 \(.cap.wait_ms_p99) ms, timeouts \(.cap.timeouts)"' <<<"$final"
	jq -r '.lanes[] | "    lane \(.name | tojson): \(.acquired) slots taken, \(.waits) waits, p99 \(.wait_ms_p99) ms, timeouts \(.timeouts)"' <<<"$final"
	echo "switch to read-only until the primary was empty   ${drained_on:-never} s"
	echo "switch back until the replica was empty           ${drained_off:-never} s"
	jq -r '"writes refused while read-only (SQLSTATE 25006) \(.writes_refused)   (writes done: \(.writes_ok), other errors: \(.errors))"' <<<"$app"
	jq -r '"connections redirected / moved live            \(.totals.redirects) / \(.totals.migrations)"' <<<"$final"
	jq -r '"statements / transactions counted by pqshim    \(.totals.queries) / \(.totals.xacts)"' <<<"$final"
	echo "transactions reported by the programs          pgbench $tx1 + $tx2, demo_app $(jq .transactions <<<"$app")"
	jq -r '"cross-thread uses (two threads, one connection) \(.totals.cross_thread_uses)",
	       "connections left open / leaked                 \(.connections | length) / \(.totals.leaked)"' <<<"$final"
	echo
	if [ -n "$cluster" ]; then
		echo "cluster: peak open at once over both hosts, by the server's clock  $cpeak   (cap: max_active = $ccap, scope = cluster)"
		for h in $chosts; do
			sql "select '    host $h: ' || count(*) filter (where host = '$h') || ' transactions ('
				|| round(100.0 * count(*) filter (where host = '$h') / nullif(count(*), 0)) || '%), '
				|| round(100 * extract(epoch from sum(t1 - t0) filter (where host = '$h')) / nullif(extract(epoch from sum(t1 - t0)), 0)) || '% of the slot time, at most '
				|| ($(sweep demo_cluster "host = '$h'" | tr '\n' ' ') select max(n) from open) || ' open at once'
				from demo_cluster where host <> 'migration'"
		done
		if [ "${cmrows:-0}" = 1 ]; then
			echo "cluster: lane \"migration\" (exclusive) on demo-a: asked at t=$(awk -v a="$cmstart" -v w="$cmwait" 'BEGIN { printf "%.2f", a - w }')s, waited $cmwait s, ran from t=${cmstart}s to t=${cmend}s"
			echo "    transactions of either host that overlapped it, by the server's clock   $cmoverlap   (of $cmothers)"
			echo "    transactions before / after it, per host (both resumed)   $cmhosts"
		else
			echo "cluster: lane \"migration\" (exclusive): no row of the migration's transaction ($(tail -n 2 "$work/cmig.log" 2>/dev/null | tr '\n' ' '))"
		fi
	else
		echo "cluster: skipped (needs root for the simulated hosts' mount namespaces)"
	fi
} >"$out/report.txt"
say "report"
cat "$out/report.txt"

if command -v gnuplot >/dev/null; then
	# part 1 on top (the migration shaded), the two hosts below
	{
		echo 'set terminal pngcairo size 1000,'"$([ -n "$cluster" ] && echo 900 || echo 560)"' font "sans,10"'
		echo "set output '$out/pqshim-demo.png'"
		[ -n "$cluster" ] && echo 'set multiplot layout 2,1'
		cat <<EOT
set title "pqshim demo: 16 clients under max_active = $cap, 2 of them in lane \"reports\" (max_active = 1)\nread-only from ${on_at}s to ${off_at}s; an exclusive migration at ${mig_at}s" noenhanced
set xlabel "seconds"
set ylabel "transactions / connections"
set key below maxcols 2
set grid
set yrange [0:*]
set xrange [0:$((secs + 1))]
set arrow from $on_at, graph 0 to $on_at, graph 1 nohead dt 2 lc rgb "red"
set arrow from $off_at, graph 0 to $off_at, graph 1 nohead dt 2 lc rgb "red"
EOT
		[ "${mrows:-0}" = 1 ] && cat <<EOT
set object 1 rect from $mstart, graph 0 to $mend, graph 1 fc rgb "#d62728" fs transparent solid 0.25 noborder
set label 1 "migration\\nwaited $mwait s\\n$moverlap others beside it" at $mend, graph 0.6 offset 0.5, 0 tc rgb "#d62728"
EOT
		cat <<EOT
plot "$out/server.dat" using 1:2 with steps lw 1 lc rgb "#c0c8d8" title "transactions open on the primary, at each start and end (server clock)", \
     "$out/server_peaks.dat" using 1:2 with steps lw 3 lc rgb "#1f77b4" title "... the most open at once in each 0.25 s", \
     "$out/reports_peaks.dat" using 1:2 with steps lw 2 lc rgb "#e377c2" title "... of them in lane \"reports\" (server clock)", \
     "$out/samples.dat" using 1:2 with steps lw 2 lc rgb "#ff7f0e" title "slots held (pqshim stat)", \
     "" using 1:3 with steps lc rgb "#2ca02c" title "waiting for a slot (pqshim stat)", \
     "" using 1:4 with lines lw 2 lc rgb "#9467bd" title "connections on the primary", \
     "" using 1:5 with lines lw 2 lc rgb "#8c564b" title "connections on the replica", \
     $cap with lines dt 3 lc rgb "black" title "the cap"
EOT
		[ -n "$cluster" ] && cat <<EOT
unset arrow
unset object 1
unset label 1
EOT
		[ "${cmrows:-0}" = 1 ] && cat <<EOT
set object 2 rect from $cmstart, graph 0 to $cmend, graph 1 fc rgb "#d62728" fs transparent solid 0.25 noborder
set label 2 "migration on demo-a\\n$cmoverlap of either host beside it" at $cmend, graph 0.6 offset 0.5, 0 tc rgb "#d62728"
EOT
		[ -n "$cluster" ] && cat <<EOT
set title "two hosts (own /dev/shm and host name each), 4 pgbench clients each, one cap of scope = cluster: max_active = $ccap\nan exclusive migration on demo-a at ${cmig_at}s" noenhanced
set ylabel "transactions open (server clock)"
set yrange [0:$((ccap + 1))]
set xrange [0:*]
plot "$out/cluster_peaks.dat" using 1:2 with steps lw 3 lc rgb "#1f77b4" title "both hosts: the most open at once in each 0.25 s", \
     "$out/cluster_demo-a_peaks.dat" using 1:2 with steps lw 5 lc rgb "#ff7f0e" title "... on host demo-a", \
     "$out/cluster_demo-b_peaks.dat" using 1:2 with steps lw 2 lc rgb "#2ca02c" title "... on host demo-b", \
     $ccap with lines dt 3 lc rgb "black" title "the cluster's cap"
EOT
	} >"$work/plot.gp"
	gnuplot "$work/plot.gp" 2>"$work/gnuplot.err" && echo && echo "picture of the run: $out/pqshim-demo.png (data: $out/*.dat)"
fi
say "stopping the servers; nothing is left behind (the report and picture stay in $out)"
