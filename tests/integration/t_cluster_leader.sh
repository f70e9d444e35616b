#!/usr/bin/env bash
# t_cluster_leader.sh: scope = cluster, a host's leader goes while the host's
# other processes hold slots mid-transaction; the other host wants every slot
# all along. From the rows every transaction logs on the server (now() at its
# start, clock_timestamp() at its end), the cluster never runs more than its
# cap of 4:
#  - kill -9 of the leader: host h1's leader is a psql that holds no slot;
#    two pgbench processes of h1 (B, C) are inside 5 s transactions; host h2
#    runs 4 clients of 20 ms transactions. B and C are stopped (SIGSTOP), the
#    leader is killed, B and C go on a second later: the slots of B and C
#    stayed locked on the coordinator all along (h1's standby holds them
#    too), so h2 never got them while B and C ran; the standby took over
#    (the log says so) and h2 kept running on its own share.
#  - the leader's session ended on the server (pg_terminate_backend) while
#    its process lives: two more 5 s transactions of h1 hold their slots;
#    the leader reconnects and takes back the standby's keys; h2 never gets
#    them meanwhile.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"

coord_db pqt_coordl_$$
POL=$(cluster_policy lead 4 20s)
host_up h1
host_up h2
sql_primary "create table llog (host text, t0 timestamptz, t1 timestamptz)" >/dev/null
cat >"$T/x20.sql" <<'EOF'
begin;
select pg_sleep(0.02);
insert into llog values (current_setting('application_name'), now(), clock_timestamp());
commit;
EOF
cat >"$T/long.sql" <<'EOF'
begin;
select pg_sleep(5);
insert into llog values (current_setting('application_name'), now(), clock_timestamp());
commit;
EOF
pgb() { # HOST APP SCRIPT ARGS...: pgbench under the shim on HOST
	local host=$1 app=$2 script=$3
	shift 3
	PGAPPNAME=$app on_host "$host" env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" \
		"$PGBENCH" -n -f "$script" "$@"
}
standbys() { # h1's standby sessions on the coordinator
	sql_primary "select count(*) from pg_stat_activity where datname = '$CDB'
		and application_name like 'pqshim-standby % h1'"
}
leader_backend() { # h1's leader session on the coordinator
	sql_primary "select pid from pg_stat_activity where datname = '$CDB'
		and application_name like 'pqshim % h1%' and application_name not like 'pqshim-standby%'"
}
two_long() { # APP NAME1 NAME2: two pgbench processes on h1, one long.sql transaction each (B, C)
	pgb h1 "$1" "$T/long.sql" -c 1 -t 1 >"$T/$2.out" 2>"$T/$2.err" &
	B=$!
	pgb h1 "$1" "$T/long.sql" -c 1 -t 1 >"$T/$3.out" 2>"$T/$3.err" &
	C=$!
	bg_track "$B" "$C"
}
h1_active() { [ "$(host_stat h1 "$POL" | jq -r .cap.active)" = "$1" ]; }

# h1's leader: a psql that runs one statement, then idles (no slot)
held_start lead on_host h1 env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" \
	"$PSQL" -X -A -t -q -v ON_ERROR_STOP=1
held_send lead "select 'led';"
led() { grep -q led "$T/lead.out"; }
wait_until 10 led || fail "h1's psql never ran: $(cat "$T/lead.err")"
assert_eq "$(host_stat h1 "$POL" | jq -r .cluster.leader_pid)" "${HELD_PID[lead]}" "h1's leader is the psql"

# h2 wants every slot all along
pgb h2 h2 "$T/x20.sql" -c 4 -j 4 -T 18 >"$T/h2.out" 2>"$T/h2.err" &
H2=$!
bg_track "$H2"
h2_runs() { [ "$(sql_primary "select count(*) from llog where host = 'h2'")" -ge 20 ]; }
wait_until 10 h2_runs || fail "h2 never ran: $(cat "$T/h2.err")"

# ============ kill -9 of h1's leader while B and C hold slots =================
two_long h1 b c
B1=$B C1=$C
wait_until 10 h1_active 2 || fail "B and C never held their slots: $(host_stat h1 "$POL" | jq -c .cap)"
have_standby() { [ "$(standbys)" -ge 1 ]; }
wait_until 2 have_standby || true # asserted below, after the server's evidence
sb1=$(standbys)
sbpid=$(host_stat h1 "$POL" | jq -r .cluster.standby_pid)
sleep 0.5
# B and C stopped for a second: the host's other processes cannot take the
# lead at once (their work runs on in their backends meanwhile)
kill -STOP "$B" "$C"
t_kill=$EPOCHREALTIME
kill -9 "${HELD_PID[lead]}"
sleep 1
kill -CONT "$B" "$C"
for p in "$B" "$C"; do
	rc=0
	wait "$p" || rc=$?
	assert_eq "$rc" 0 "h1's pgbench after its leader's kill ($(cat "$T/b.err" "$T/c.err"))"
done
read -r n before after <<<"$(sql_primary "select count(*), count(*) filter (where t0 < to_timestamp($t_kill)),
	count(*) filter (where t1 > to_timestamp($t_kill)) from llog where host = 'h1'" | tr '|' ' ')"
assert_eq "$n $before $after" "2 2 2" "B's and C's transactions: rows, begun before the kill, ended after it"
h2_during=$(sql_primary "select count(*) from llog where host = 'h2' and t0 > to_timestamp($t_kill)
	and t1 < (select min(t1) from llog where host = 'h1')")
peak1=$(overlap llog)
echo "kill -9 of h1's leader: h2 ran $h2_during transactions while B and C went on; server-side peak $peak1;" \
	"$(grep -o 'taking over as its standby with [0-9]* slots' "$T/lead.log" | head -n 1)"
assert_ge "$h2_during" 20 "h2's transactions between the kill and the end of B and C (h2 kept contending)"
assert_le "$peak1" 4 "server: transactions overlapping after the leader's kill (from the logged rows)"

# ============ the leader's session ends on the server, its process lives =====
two_long h1b b2 c2
wait_until 10 h1_active 2 || fail "B2 and C2 never held their slots: $(host_stat h1 "$POL" | jq -c .cap)"
wait_until 2 have_standby || true
sb2=$(standbys)
sleep 0.5
lb=$(leader_backend)
[ -n "$lb" ] || fail "h1 has no leader on the coordinator"
t_term=$EPOCHREALTIME
sql_primary "select pg_terminate_backend($lb)" >/dev/null
back() { [ -n "$(leader_backend)" ] && [ "$(leader_backend)" != "$lb" ]; }
wait_until 5 back || fail "h1's leader never reconnected: $(tail -5 "$T/lead.log")"
for p in "$B" "$C"; do
	rc=0
	wait "$p" || rc=$?
	assert_eq "$rc" 0 "h1's pgbench after its leader's session ended ($(cat "$T/b2.err" "$T/c2.err"))"
done
rc=0
wait "$H2" || rc=$?
assert_eq "$rc" 0 "h2's pgbench ($(tail -3 "$T/h2.err"))"
h2_during=$(sql_primary "select count(*) from llog where host = 'h2' and t0 > to_timestamp($t_term)
	and t1 < (select min(t1) from llog where host = 'h1b')")
sql_primary "create view llog2 as select * from llog where t1 > to_timestamp($t_term)" >/dev/null
peak2=$(overlap llog2)
peak=$(overlap llog)
echo "h1's leader session terminated: h2 ran $h2_during transactions while h1's two went on;" \
	"server-side peak since $peak2, over the whole run $peak"
assert_ge "$h2_during" 20 "h2's transactions between the termination and the end of h1's"
assert_le "$peak2" 4 "server: transactions overlapping after the termination (from the logged rows)"
assert_le "$peak" 4 "server: transactions overlapping over the whole run (from the logged rows)"
assert_eq "$peak" 4 "server: the cap is reached"
# how: h1's standby held the slots too, and took over
assert_eq "$sb1 $sb2" "1 1" "h1's standby sessions on the coordinator before the kill, the termination"
assert_match "$sbpid" "^($B1|$C1)\$" "stat on h1 before the kill: standby_pid (B or C)"
assert_ge "$(host_stat h1 "$POL" | jq -r .cluster.takeovers)" 1 "stat on h1: takeovers"
grep -q "taking over as its standby with 2 slots" "$T/lead.log" ||
	fail "no standby took over with B's and C's slots: $(grep leads "$T/lead.log")"
echo "ok: a host's slots in use stay locked while its leader dies or loses its session"
