#!/usr/bin/env bash
# t_clane_leader.sh: scope = cluster, kill -9 of a host's leader does not let
# another host run beside what the host runs in a lane: its standby holds the
# gate (S exclusive) and the lanes' keys too, and takes over (lease_seg.h).
#  - exclusive: on h1 the leader is an idle psql, the standby a psql of lane
#    "migrations" (exclusive); h2 loops 20 ms web transactions. The migration
#    begins (it gets the cluster's gate), h1's leader is killed with kill -9
#    (the standby stopped for that second, so that it cannot take the lead at
#    once: its sessions must do), the migration ends 1.5 s later: from the rows every transaction writes
#    (the server's now() at its start, clock_timestamp() at its end) no h2
#    transaction overlapped it, and h2's work ran before and after it.
#  - a lane's key: the same with lane "reports" (max_active = 1) on hosts h3
#    and h4 (another policy): h3's standby holds the lane's slot in a
#    transaction, h4 loops report transactions; h3's leader is killed: no
#    report of h4 ran beside h3's.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

coord_db pqt_clanel_$$
TBL=t_clanel
lane_table $TBL
psql_on() { # NAME HOST APP POLICY: a psql held open on HOST under POLICY
	PGAPPNAME=$3 held_start "$1" on_host "$2" env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$4" \
		"$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres pqt
}
said() { grep -qx "$2" "$T/$1.out"; }
say() { # NAME WORD: the psql says WORD (all it was sent before is done)
	held_send "$1" "select '$2';"
	wait_until "${3:-10}" said "$1" "$2" || fail "$1 never said $2: $(tail -3 "$T/$1.err")"
}
gate_lock() { # HOST KEY: the mode of the advisory lock KEY that HOST's standby / leader holds
	sql_primary "select coalesce(string_agg(w, ',' order by w), '') from (select case when
		a.application_name like 'pqshim-standby%' then 'standby' else 'leader' end || ' ' || l.mode w
		from pg_locks l join pg_stat_activity a on a.pid = l.pid where a.datname = '$CDB'
		and a.application_name like '% $1%' and l.locktype = 'advisory' and l.granted
		and l.objid = $2::oid) s"
}
standby_is() { [ "$(host_stat "$1" "$2" | jq -r .cluster.standby_pid)" = "$3" ]; }
ran_beside() { # APP OTHER: OTHER's transactions that overlapped APP's
	q "select count(*) from $TBL x, $TBL m where m.app = '$1' and x.app = '$2' and x.t0 < m.t1 and x.t1 > m.t0"
}

# ============ kill -9 of the leader of the host running the exclusive lane ====
POL=$(cluster_policy clanel 4 20s '[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
wait_timeout = 20s')
host_up h1
host_up h2
psql_on lead1 h1 idle-h1 "$POL"
say lead1 led
psql_on mig h1 migrate-1 "$POL"
say mig hello
wait_until 10 standby_is h1 "$POL" "${HELD_PID[mig]}" ||
	fail "the migration's psql is not h1's standby: $(host_stat h1 "$POL" | jq -c .cluster)"
host_load h2 web "$POL" $TBL web-h2 --threads 2 --seconds 6 --sleep 0.02
sleep 1.5
held_send mig "begin;"
say mig in 15
locks="G: $(gate_lock h1 1073741825); S: $(gate_lock h1 1073741826)"
note "h1 on the coordinator while the migration runs: $locks"
# the standby stopped for a second: it cannot take the lead at once (its
# sessions, and the migration's transaction, stay open on the servers)
kill -STOP "${HELD_PID[mig]}"
kill -9 "${HELD_PID[lead1]}"
sleep 1
kill -CONT "${HELD_PID[mig]}"
sleep 0.5
held_send mig "insert into $TBL values ('migrate-1', now(), now(), clock_timestamp());" "commit;"
say mig done
lane_wait web
note "migration: $(q "select t0 || ' .. ' || t1 from $TBL where app = 'migrate-1'")"
assert_ge "$(q "select extract(epoch from t1 - t0) from $TBL where app = 'migrate-1'")" 1.5 \
	"server: the migration spanned the kill"
assert_eq "$(ran_beside migrate-1 web-h2)" 0 "server: h2's transactions that overlapped the migration"
assert_ge "$(q "select count(*) from $TBL x, $TBL m where m.app = 'migrate-1' and x.app = 'web-h2' and x.t1 < m.t0")" 10 \
	"server: h2's transactions before the migration"
assert_ge "$(q "select count(*) from $TBL x, $TBL m where m.app = 'migrate-1' and x.app = 'web-h2' and x.t0 > m.t1")" 10 \
	"server: h2's transactions after the migration (resumed)"
assert_eq "$locks" "G: leader ExclusiveLock; S: standby ExclusiveLock" \
	"the cluster's gate while the migration ran: G the leader's, S the standby's, both exclusive"
grep -q "taking over as its standby" "$T/clanel.log" || fail "h1's standby did not take over: $(grep leads "$T/clanel.log")"
held_send mig '\q'

# ============ kill -9 of the leader of the host holding a lane's key ==========
POL=$(cluster_policy clanek 4 20s '[lane "reports"]
match = application_name=rep-*
max_active = 1')
host_up h3
host_up h4
psql_on lead3 h3 idle-h3 "$POL"
say lead3 led
psql_on rep h3 rep-h3 "$POL"
say rep hello
wait_until 10 standby_is h3 "$POL" "${HELD_PID[rep]}" ||
	fail "the report's psql is not h3's standby: $(host_stat h3 "$POL" | jq -c .cluster)"
held_send rep "begin;"
say rep in
key=$((2 << 24)) # LEASE_KEY_LANE(1, 0): lane "reports"' first slot
host_load h4 rep4 "$POL" $TBL rep-h4 --threads 1 --seconds 4 --sleep 0.02
sleep 0.5
keyheld=$(gate_lock h3 $key)
kill -STOP "${HELD_PID[rep]}"
kill -9 "${HELD_PID[lead3]}"
sleep 1
kill -CONT "${HELD_PID[rep]}"
sleep 0.5
held_send rep "insert into $TBL values ('rep-h3', now(), now(), clock_timestamp());" "commit;"
say rep done
sleep 0.5
note "h3 after its report: $(host_stat h3 "$POL" | jq -c '{cluster: .cluster | {state, leased, hosts, takeovers}, lanes: [.lanes[] | {name, max_active, active, waiting}]}')"
note "h4: $(host_stat h4 "$POL" | jq -c '{cluster: .cluster | {state, leased}, lanes: [.lanes[] | {name, max_active, active, waiting}]}')"
note "log: $(grep -v 'segment' "$T/clanek.log" | tail -5)"
lane_wait rep4
assert_eq "$(ran_beside rep-h3 rep-h4)" 0 "server: h4's report transactions that overlapped h3's"
assert_ge "$(q "select count(*) from $TBL x, $TBL m where m.app = 'rep-h3' and x.app = 'rep-h4' and x.t0 > m.t1")" 5 \
	"server: h4's report transactions after h3's"
assert_le "$(overlap "(select * from $TBL where app like 'rep-%') r")" 1 "server: report transactions at once"
assert_eq "$keyheld" "leader ShareLock,standby ShareLock" "the reports lane's key before the kill: held by h3's leader and standby"
held_send rep '\q'
echo "ok: kill -9 of a host's leader left its gate and its lane's key held by its standby"
