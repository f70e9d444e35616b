# shellcheck shell=bash
# tests/bench/cluster.sh - section 8 of `make bench` (sourced by run.sh with
# the bed running): scope = cluster across simulated hosts (each a private
# mount + UTS namespace with its own /dev/shm, so its own segment and host
# name; needs root).  Writes $work/s8.md.
#  - throughput: 12 clients running 20 ms transactions under one cap of 4,
#    spread over 3 hosts (scope = cluster, the coordinator a database of the
#    primary) against all 12 on one host (scope = host), in turn, $TR rounds;
#    the ideal is 4 / 20 ms = 200 tps.  Every transaction logs now() and
#    clock_timestamp() on the server: tps and the server-side peak of
#    overlapping transactions come from those rows;
#  - hand-off: 2 hosts, 1 client each, one slot (max_active = 1): the gap on
#    the server between the end of one host's transaction and the start of
#    the next host's, against the gap between two transactions of one host.

cluster_bench() {
	local secs=$((CAPSECS > 4 ? CAPSECS : 4)) cdb=bench_coord_$$ r h pids
	if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
		note "section 8 (cluster) needs root and unshare: left out"
		return 0
	fi
	"$PGBIN/psql" -X -q -c "create database $cdb" postgres >/dev/null
	"$PGBIN/psql" -X -q -c "create table if not exists clog (host text, t0 timestamptz, t1 timestamptz)" >/dev/null
	local coord="host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=$cdb user=postgres"
	cat >"$work/c20.sql" <<-'EOF'
		begin;
		select pg_sleep(0.02);
		insert into clog values (current_setting('application_name'), now(), clock_timestamp());
		commit;
	EOF
	sed 's/0\.02/0.01/' "$work/c20.sql" >"$work/c10.sql"
	# on HOST POLICY ARGS...: pgbench under the shim, in a namespace of its own
	on() {
		local host=$1 pol=$2
		shift 2
		PGAPPNAME=$host unshare --mount --uts -- sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm &&
			hostname "$1" && shift && exec "$@"' sh "$host" \
			env LD_PRELOAD="$LIB" PQSHIM_POLICY="$pol" "$PGBENCH" -n "$@" pqt
	}
	q() { "$PGBIN/psql" -X -A -t -q -c "$1"; }
	rows_tps() { q "select count(*) / extract(epoch from max(t1) - min(t0)) from clog"; }
	rows_peak() {
		q "with ev as (select t0 as t, 1 as d from clog union all select t1, -1 from clog),
			run as (select sum(d) over (order by t, d rows unbounded preceding) as c from ev)
			select coalesce(max(c), 0) from run"
	}
	rows_fair() { q "select min(n)::float / max(n) from (select count(*) n from clog group by host) s"; }
	log "cluster: 12 clients x 20 ms under one cap of 4, 3 hosts (cluster) vs 1 host, ${secs} s runs, $TR rounds"
	for ((r = 1; r <= TR; r++)); do
		log "    round $r/$TR"
		local pc ph
		pc=$(pol "cl-$r" "[cap]" "scope = cluster" "coordinator = $coord" "max_active = 4" "wait_timeout = 30s")
		q "truncate clog"
		pids=()
		for h in h1 h2 h3; do
			on "$h" "$pc" -c 4 -j 4 -T "$secs" -f "$work/c20.sql" >"$work/cl-$h.out" 2>&1 &
			pids+=("$!")
		done
		wait "${pids[@]}" || note "cluster round $r: a pgbench failed: $(cat "$work"/cl-h?.out | grep -m2 -i 'error\|abort')"
		rows_tps >>"$d/cl-cluster.tps"
		rows_peak >>"$d/cl-cluster.peak"
		rows_fair >>"$d/cl-cluster.fair"
		ph=$(pol "hc-$r" "[cap]" "scope = host" "max_active = 4" "wait_timeout = 30s")
		q "truncate clog"
		on h1 "$ph" -c 12 -j 12 -T "$secs" -f "$work/c20.sql" >"$work/cl-host.out" 2>&1
		rows_tps >>"$d/cl-host.tps"
		rows_peak >>"$d/cl-host.peak"
	done
	q "select xact_commit from pg_stat_database where datname = '$cdb'" >"$work/cl-coord.xacts"
	for k in cluster host; do awk '{ printf "%.4f\n", $1 / 200 }' "$d/cl-$k.tps" >"$d/cl-$k.ideal"; done
	ratios "$d/cl-host.tps" "$d/cl-cluster.tps" >"$d/cl-cluster-host.ratio"

	log "cluster: hand-off between 2 hosts, 1 slot, 10 ms transactions, ${secs} s, $TR rounds"
	for ((r = 1; r <= TR; r++)); do
		local po
		po=$(pol "ho-$r" "[cap]" "scope = cluster" "coordinator = $coord" "max_active = 1" "wait_timeout = 30s")
		q "truncate clog"
		pids=()
		for h in h1 h2; do
			on "$h" "$po" -c 1 -j 1 -T "$secs" -f "$work/c10.sql" >"$work/ho-$h.out" 2>&1 &
			pids+=("$!")
		done
		wait "${pids[@]}" || note "hand-off round $r: a pgbench failed"
		# gaps between consecutive transactions (by start), in ms: across hosts and within one
		q "select case when host = lag(host) over w then 'same' else 'cross' end,
				extract(epoch from t0 - lag(t1) over w) * 1000
			from clog window w as (order by t0)" | awk -F'|' -v d="$d" \
			'$2 != "" { print $2 >> (d "/ho-" $1 ".ms") }'
		q "select count(*) from clog" >>"$d/ho.n"
	done
	pct() { sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END { if (!NR) { print "nan"; exit } i = int(NR * p + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.2f", v[i] }'; }
	{
		echo "### 8. Across hosts: scope = cluster"
		echo
		echo "Simulated hosts on this machine: each a private mount and UTS namespace (\`unshare --mount"
		echo "--uts\`) with its own tmpfs on /dev/shm (so its own segment) and host name; the coordinator"
		echo "is a database of the primary, over its Unix socket. A script of \`begin; select pg_sleep(0.02);"
		echo "insert ... now(), clock_timestamp(); commit\`, ${secs} s runs, $TR rounds, in turn: 12 clients"
		echo "spread over 3 hosts (4 each, \`-c 4 -j 4\`) under \`scope = cluster\`, \`max_active = 4\`, and"
		echo "the same 12 clients on one host under \`scope = host\`, \`max_active = 4\` (the same cap,"
		echo "kept by the host's semaphore alone). The ideal is 4 / 20 ms = 200 tps. tps and the peak come"
		echo "from the rows the transactions logged on the server (rows over the span from the first"
		echo "start to the last end, leader start-up included; the most rows overlapping in time);"
		echo "fairness is the least busy host's transactions over the busiest's."
		echo
		echo "| run | tps, median (min-max) | against the ideal 200 tps | server peak (from the rows) | fairness (min/max host) |"
		echo "|---|---:|---:|---:|---:|"
		echo "| 3 hosts, \`scope = cluster\`, 4 clients each | $(show "$d/cl-cluster.tps" %.1f) | $(show "$d/cl-cluster.ideal" %.3f) | $(maxof "$d/cl-cluster.peak") | $(show "$d/cl-cluster.fair" %.2f) |"
		echo "| 1 host, \`scope = host\`, 12 clients | $(show "$d/cl-host.tps" %.1f) | $(show "$d/cl-host.ideal" %.3f) | $(maxof "$d/cl-host.peak") | - |"
		echo
		echo "The cluster's throughput over the host cap's, round by round: $(rshow "$d/cl-cluster-host.ratio");"
		echo "the coordinator's database committed $(cat "$work/cl-coord.xacts") transactions over all these runs"
		echo "(the leaders' statements: lock, unlock, census, announcements)."
		echo
		echo "Hand-off: 2 hosts, one client each, \`max_active = 1\`, 10 ms transactions, ${secs} s, $TR rounds"
		echo "($(paste -sd+ "$d/ho.n" | bc) transactions in all). The gap on the server between one transaction's"
		echo "end (its clock_timestamp()) and the next one's start (now()), in ms:"
		echo
		echo "| next transaction | count | median | p90 | max |"
		echo "|---|---:|---:|---:|---:|"
		for k in same cross; do
			[ -s "$d/ho-$k.ms" ] || continue
			echo "| $([ $k = same ] && echo "same host (local hand-off)" || echo "other host (through the coordinator)") | $(wc -l <"$d/ho-$k.ms") | $(pct "$d/ho-$k.ms" 0.5) | $(pct "$d/ho-$k.ms" 0.9) | $(pct "$d/ho-$k.ms" 1) |"
		done
		echo
		echo "The slot moves to the other host when the fair share turns (every 250 ms while both"
		echo "want: the remainder of max_active over the hosts goes round); a hand-off between hosts is"
		echo "the holder's next release lowering its lease (it runs no new transaction), the unlock and"
		echo "NOTIFY on the coordinator, and the other host's leader locking the slot and waking its"
		echo "waiter; within a host it is the cap's local hand-off plus the client's own round trips."
		echo
	} >"$work/s8.md"
	"$PGBIN/psql" -X -q -c "drop database $cdb with (force)" postgres >/dev/null 2>&1 || true
}
cluster_bench
