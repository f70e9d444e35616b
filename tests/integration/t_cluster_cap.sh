#!/usr/bin/env bash
# t_cluster_cap.sh: scope = cluster holds one cap across three simulated hosts
# (each its own mount + UTS namespace, its own /dev/shm, so its own segment),
# kept as advisory locks on a coordinator (a database of the bed's primary).
#  - contended: the same policy (max_active = 4) on the three hosts, 4 pgbench
#    clients each (-c 4 -j 4), 20 ms transactions that log now() (their
#    start, after the slot was taken) and clock_timestamp() (after the sleep)
#    into a table: from those rows the server never had more than 4
#    transactions at once and did have 4; throughput is at least 80% of the
#    ideal 4 / 20 ms; each host ran at least half the busiest host's
#    transactions; the coordinator never showed more than 4 slot locks.
#  - kill -9: host A's two pgbench processes hold all 4 slots (pg_sleep(30)
#    inside their transactions); host B's transaction waits (pqshim stat on B:
#    waiting 1); A's processes are killed with kill -9: B's transaction starts
#    on the server within 1 s of the kill.
#  - uncontended (max_active = 64, 2 clients on one host): the coordinator's
#    database commits at most one transaction per 20 of the workload's.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"

coord_db pqt_coord_$$
# (trust auth: the password is never checked, and must never be shown)
COORD="host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=$CDB user=postgres password=hunter2"
cpolicy() { # NAME MAX
	policy_new "$1" "[cap]
scope = cluster
coordinator = $COORD
max_active = $2
wait_timeout = 20s
[shim]
log = $T/$1.log
"
}
slot_locks() { # slot locks held on the coordinator now
	sql_primary "select count(distinct l.objid) from pg_locks l join pg_database d on d.oid = l.database
		where d.datname = '$CDB' and l.locktype = 'advisory' and l.objsubid = 2
		and l.objid < 1073741824::oid and l.granted"
}
pgb() { # HOST SCRIPT ARGS...: pgbench under the shim on HOST, against the bed's db pqt
	local host=$1 script=$2
	shift 2
	PGAPPNAME=$host on_host "$host" env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" \
		"$PGBENCH" -n -h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres -f "$script" "$@" pqt
}

for h in h1 h2 h3; do host_up "$h"; done

# ============ contended: three hosts, 4 clients each, cap 4 ================
POL=$(cpolicy cap 4)
sql_primary "create table clog (host text, t0 timestamptz, t1 timestamptz)" >/dev/null
cat >"$T/x20.sql" <<'EOF'
begin;
select pg_sleep(0.02);
insert into clog values (current_setting('application_name'), now(), clock_timestamp());
commit;
EOF
DUR=8
pids=()
for h in h1 h2 h3; do
	pgb "$h" "$T/x20.sql" -c 4 -j 4 -T "$DUR" >"$T/$h.out" 2>"$T/$h.err" &
	pids+=("$!")
	bg_track "$!"
done
max_locks=0
for ((i = 0; i < DUR * 4; i++)); do
	sleep 0.25
	n=$(slot_locks)
	[ "$n" -gt "$max_locks" ] && max_locks=$n
	if [ "$i" = 12 ]; then # mid-run: what pqshim stat shows of the cluster, on h1
		host_stat h1 "$POL" >"$T/stat.json"
		nsenter -t "${HOST_PID[h1]}" -m -u -- "$PQSHIM" stat -p "$POL" >"$T/stat.txt"
		nsenter -t "${HOST_PID[h1]}" -m -u -- "$PQSHIM" stat -p "$POL" --prometheus >"$T/stat.prom"
		nsenter -t "${HOST_PID[h1]}" -m -u -- "$PQSHIM" top -p "$POL" -n 1 >"$T/stat.top"
		# pqshim serve on h1 answers with the same cluster as stat
		nsenter -t "${HOST_PID[h1]}" -m -u -- "$PQSHIM" serve -p "$POL" --listen 127.0.0.1:0 \
			>"$T/serve.out" 2>"$T/serve.err" &
		SERVE=$!
		bg_track "$SERVE"
		served() { grep -q '^pqshim serve: .* on http://127\.0\.0\.1:[0-9]*/metrics' "$T/serve.out"; }
		wait_until 10 served || fail "serve on h1 did not start: $(cat "$T/serve.out" "$T/serve.err")"
		url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$T/serve.out" | head -n 1)
		curl -sS --max-time 10 -o "$T/serve.json" "$url/stat.json" || fail "serve: GET /stat.json"
		curl -sS --max-time 10 -o "$T/serve.prom" "$url/metrics" || fail "serve: GET /metrics"
		kill -TERM "$SERVE"
		wait "$SERVE" || true
	fi
done
assert_eq "$(jq -r '.cluster | "\(.state) \(.max_active) \(.host)"' "$T/serve.json")" "ok 4 h1" \
	"serve /stat.json: cluster state, max_active, host"
assert_eq "$(jq -r '[.cluster.hosts[].host] | sort | join(",")' "$T/serve.json")" h1,h2,h3 \
	"serve /stat.json: cluster hosts"
grep -q '^pqshim_cluster_up 1$' "$T/serve.prom" || fail "serve /metrics: pqshim_cluster_up"
grep -q '^pqshim_cluster_host_leased{host="h2",' "$T/serve.prom" || fail "serve /metrics: no lease of h2"
note "stat on h1 mid-run: $(jq -c .cluster "$T/stat.json")"
assert_eq "$(jq -r '.cluster | "\(.state) \(.max_active) \(.host)"' "$T/stat.json")" "ok 4 h1" \
	"stat: cluster state, max_active, host"
assert_eq "$(jq -r '[.cluster.hosts[].host] | sort | join(",")' "$T/stat.json")" h1,h2,h3 "stat: cluster hosts"
assert_le "$(jq -r .cluster.held "$T/stat.json")" 4 "stat: slots held in the cluster"
assert_eq "$(jq -r '[.cluster.hosts[] | select(.this_host) | .host] | join(",")' "$T/stat.json")" h1 \
	"stat: this host among the hosts"
assert_eq "$(jq -r '[.cluster.hosts[].leased] | add' "$T/stat.json")" "$(jq -r .cluster.held "$T/stat.json")" \
	"stat: held is the sum of the hosts' leases"
assert_match "$(jq -r .cluster.coordinator "$T/stat.json")" "^host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=$CDB user=postgres\$" \
	"stat: the coordinator, without its password"
grep -q "^cluster ok  coordinator host=" "$T/stat.txt" || fail "stat table: no cluster line: $(cat "$T/stat.txt")"
grep -q '^  host h2 ' "$T/stat.txt" || fail "stat table: no line for host h2: $(cat "$T/stat.txt")"
grep -q '^pqshim_cluster_host_leased{host="h3",' "$T/stat.prom" || fail "prometheus: no lease of h3"
grep -q '^pqshim_cluster_up 1$' "$T/stat.prom" || fail "prometheus: pqshim_cluster_up"
grep -q '^cluster ok  coordinator host=' "$T/stat.top" || fail "top: no cluster line: $(cat "$T/stat.top")"
assert_eq "$(grep -c '^  host h[123] ' "$T/stat.top")" 3 "top: a line per host"
if grep -l hunter2 "$T"/stat.* "$T"/serve.* "$T"/*.log; then fail "the coordinator's password was shown"; fi
for i in "${!pids[@]}"; do
	rc=0
	wait "${pids[$i]}" || rc=$?
	assert_eq "$rc" 0 "pgbench on h$((i + 1)): exit status ($(tail -3 "$T/h$((i + 1)).err"))"
done
peak=$(overlap clog)
read -r rows span <<<"$(sql_primary "select count(*), extract(epoch from max(t1) - min(t0)) from clog" | tr '|' ' ')"
tps=$(awk -v n="$rows" -v s="$span" 'BEGIN { printf "%.1f", n / s }')
per=$(sql_primary "select string_agg(host || '=' || n, ' ' order by host) from
	(select host, count(*) n from clog group by host) s")
read -r lo hi <<<"$(sql_primary "select min(n), max(n) from (select count(*) n from clog group by host) s" | tr '|' ' ')"
echo "contended: $rows transactions in ${span}s = $tps tps (ideal 200); per host: $per;" \
	"server-side peak $peak; coordinator's slot locks at most $max_locks (sampled)"
assert_le "$peak" 4 "server: transactions overlapping (from the logged rows)"
assert_eq "$peak" 4 "server: the cap is reached"
assert_le "$max_locks" 4 "coordinator: slot locks held"
assert_ge "$tps" 160 "throughput: at least 80% of the ideal 200 tps"
assert_eq "$(sql_primary "select count(distinct host) from clog")" 3 "hosts that ran"
assert_ge "$((lo * 2))" "$hi" "fairness: each host at least half the busiest host's transactions ($per)"
assert_eq "$(slot_locks)" 0 "coordinator: slot locks after every host's processes ended"

# ============ kill -9: a host holding every slot dies =======================
sql_primary "create table klog (host text, t0 timestamptz)" >/dev/null
printf 'begin;\nselect pg_sleep(30);\ncommit;\n' >"$T/hold.sql"
printf 'begin;\ninsert into klog values (current_setting('"'"'application_name'"'"'), now());\ncommit;\n' >"$T/one.sql"
a1=0 a2=0
pgb h1 "$T/hold.sql" -c 2 -j 2 -t 1 >"$T/a1.out" 2>&1 &
a1=$!
bg_track "$a1"
pgb h1 "$T/hold.sql" -c 2 -j 2 -t 1 >"$T/a2.out" 2>&1 &
a2=$!
bg_track "$a2"
a_holds() { [ "$(host_stat h1 "$POL" | jq -r .cap.active)" = 4 ] && [ "$(slot_locks)" = 4 ]; }
wait_until 10 a_holds || fail "host h1 never held the 4 slots: $(host_stat h1 "$POL")"
pgb h2 "$T/one.sql" -c 1 -j 1 -t 1 >"$T/b.out" 2>"$T/b.err" &
b=$!
bg_track "$b"
b_waits() { [ "$(host_stat h2 "$POL" | jq -r .cap.waiting)" = 1 ]; }
wait_until 10 b_waits || fail "host h2's transaction never waited: $(host_stat h2 "$POL")"
sleep 0.3
assert_eq "$(sql_primary "select count(*) from klog")" 0 "h2's transaction ran while h1 held every slot"
t_kill=$EPOCHREALTIME
kill -9 "$a1" "$a2"
wait "$a1" "$a2" 2>/dev/null || true
rc=0
wait "$b" || rc=$?
assert_eq "$rc" 0 "h2's pgbench after the kill ($(cat "$T/b.err"))"
took=$(sql_primary "select extract(epoch from t0) - $t_kill from klog")
echo "kill -9: host h2's waiting transaction started ${took}s after host h1's processes were killed"
assert_le "$took" 1.0 "seconds from the kill to h2's transaction on the server"

# ============ uncontended: the coordinator stays out of the way =============
POL=$(cpolicy calm 64)
sql_primary "create table ulog (host text, t0 timestamptz, t1 timestamptz)" >/dev/null
sed 's/clog/ulog/' "$T/x20.sql" >"$T/u20.sql"
xacts() {
	sql_primary "select pg_stat_force_next_flush(); select xact_commit from pg_stat_database
		where datname = '$CDB'" | tail -1
}
gone() { [ "$(sql_primary "select count(*) from pg_stat_activity where datname = '$CDB'")" = 0 ]; }
wait_until 10 gone || fail "coordinator sessions left before the uncontended run"
before=$(xacts)
(pgb h3 "$T/u20.sql" -c 2 -j 2 -T 5) >"$T/u.out" 2>"$T/u.err" || fail "uncontended pgbench: $(cat "$T/u.err")"
wait_until 10 gone || fail "coordinator sessions left after the uncontended run"
sleep 1.2 # the leader's session reports its statistics as it ends
after=$(xacts)
work=$(sql_primary "select count(*) from ulog")
coord=$((after - before))
echo "uncontended: $work workload transactions, $coord on the coordinator's database"
assert_ge "$work" 200 "uncontended: workload transactions"
assert_le "$((coord * 20))" "$work" "coordinator transactions x 20"
assert_le "$(overlap ulog)" 2 "uncontended: overlap (2 clients)"
echo "ok: one cap across three hosts, fair, fast, a dead host's slots come back at once"
