#!/usr/bin/env bash
# t_cluster_exec.sh: scope = cluster, a host's leader whose image exec()s a
# program that never uses libpq (Python's os.execv of sleep): its pid lives
# on, its robust leader mutex is let go by the kernel at the exec, libpq's
# socket closes with the old image.
#  - with other work on the host: h1's leader (a psycopg2 process) execs
#    while h1's pgbench (its standby) and h2's pgbench run logged 0.2 s
#    transactions under a cluster cap of 2: within 3 s the old leader's
#    session is gone from the coordinator (pg_stat_activity), the pgbench
#    leads h1 (pqshim stat: leader_pid, state ok, and its session is on the
#    coordinator), h1 keeps running transactions after the exec, and the
#    rows never show more than 2 at once.
#  - alone on its host: h1's only process, the leader, execs: pqshim stat
#    shows no leader (leader_pid 0, not the pid of the sleep), the
#    coordinator has no session of h1; a new process on h1 leads and runs
#    while h2 holds the cap, never more than 2 at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
command -v jq >/dev/null || fail "jq missing"

coord_db pqt_coorde_$$
POL=$(cluster_policy exec 2 20s)
TBL=t_cluster_exec_$$
sql_primary "create table $TBL (h text, t0 timestamptz, t1 timestamptz)" >/dev/null
at_exit "sql_primary 'drop table if exists $TBL' >/dev/null 2>&1"
sessions_of() { # HOST: its leader's and standby's sessions on the coordinator
	sql_primary "select count(*) from pg_stat_activity where datname = '$CDB'
		and application_name like 'pqshim % $1%'"
}
backend_gone() { # PID: no such session on the coordinator
	[ "$(sql_primary "select count(*) from pg_stat_activity where pid = $1")" = 0 ]
}
st() { host_stat h1 "$POL" | jq -r "$1"; }
host_up h1
host_up h2

cat >"$T/leader.py" <<'EOF2'
import os, sys, threading, time, psycopg2
c = psycopg2.connect(application_name="t_cluster_exec_leader")
for _ in range(3):
    cur = c.cursor()
    cur.execute("select 1")          # a slot: this process leads its host (or is its standby)
    c.commit()
print("LEADS", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
if sys.argv[2] != "work":            # exec a program that never uses libpq
    os.execv("/bin/sleep", ["sleep", sys.argv[2]])
def work():                          # or 2 threads run 3 logged 0.3 s transactions each
    k = psycopg2.connect(application_name="t_cluster_exec_two")
    for _ in range(3):
        cur = k.cursor()
        cur.execute("select pg_sleep(0.3); insert into %s values ('h1two', now(), clock_timestamp())"
                    % sys.argv[3])
        k.commit()
ts = [threading.Thread(target=work) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print("DONE", flush=True)
EOF2
printf 'begin;\nselect pg_sleep(0.2);\ninsert into %s values (:h, now(), clock_timestamp());\ncommit;\n' \
	"$TBL" >"$T/x.sql"
proc_up() { # NAME ARGS...: leader.py on h1, going on once $T/NAME.go exists (sets PROC)
	local n=$1
	shift
	(PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h1 "$PY" "$T/leader.py" "$T/$n.go" "$@") \
		>"$T/$n.out" 2>"$T/$n.err" &
	PROC=$!
	bg_track "$PROC"
	wait_until 10 grep -q LEADS "$T/$n.out" || fail "$n on h1: $(cat "$T/$n.err")"
}
leader_up() { # NAME SLEEP: a leader on h1 that execs sleep SLEEP once $T/NAME.go exists (sets LEADER)
	proc_up "$@"
	LEADER=$PROC
	assert_eq "$(st .cluster.leader_pid)" "$LEADER" "h1's leader is the Python process"
}
pgb() { # HOST SECONDS
	PGAPPNAME=t_cluster_exec_$1 PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host "$1" "$PGBENCH" -n \
		-h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres -c 2 -j 2 -T "$2" -D "h='$1'" -f "$T/x.sql" pqt
}
comm_of() { cat "/proc/$1/comm" 2>/dev/null || echo gone; }

# ============ the leader execs while the host's other work goes on ==========
leader_up a 6
(pgb h1 7) >"$T/pgb1.out" 2>&1 &
PGB1=$!
bg_track "$PGB1"
standby() { [ "$(st .cluster.standby_pid)" = "$PGB1" ]; }
wait_until 10 standby || fail "h1's pgbench never became the standby ($(host_stat h1 "$POL"))"
(pgb h2 7) >"$T/pgb2.out" 2>&1 &
PGB2=$!
bg_track "$PGB2"
OLD=$(st '.cluster.hosts[] | select(.this_host) | .backend_pid')
[ -n "$OLD" ] && [ "$OLD" != null ] || fail "no session of h1's leader on the coordinator"
sleep 1
t_exec=$(sql_primary "select clock_timestamp()")
touch "$T/a.go"
execed() { [ "$(comm_of "$LEADER")" = sleep ]; }
wait_until 3 execed || fail "the leader did not exec: $(cat "$T/a.err")"
t0=$EPOCHREALTIME
new_leader() { [ "$(st .cluster.leader_pid)" = "$PGB1" ] && [ "$(st .cluster.state)" = ok ]; }
wait_until 3 new_leader || fail "h1 did not elect its pgbench ($(host_stat h1 "$POL"))"
wait_until 3 backend_gone "$OLD" || fail "the exec'd leader's session $OLD is still on the coordinator"
took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
echo "exec with a standby: the pgbench leads h1 and the old session $OLD is gone ${took}s after the exec"
NEW=$(st '.cluster.hosts[] | select(.this_host) | .backend_pid')
[ -n "$NEW" ] && [ "$NEW" != null ] && [ "$NEW" != "$OLD" ] || fail "h1's new leader has no session of its own"
assert_eq "$(sql_primary "select count(*) from pg_stat_activity where pid = $NEW and datname = '$CDB'")" 1 \
	"coordinator: the new leader's session"
kill -0 "$LEADER" || fail "the exec'd sleep is gone already (the test needs its pid alive)"
wait "$PGB1" || fail "h1's pgbench: $(cat "$T/pgb1.out")"
wait "$PGB2" || fail "h2's pgbench: $(cat "$T/pgb2.out")"
after=$(sql_primary "select count(*) from $TBL where h = 'h1' and t0 > '$t_exec'::timestamptz + interval '1 s'")
assert_ge "$after" 3 "h1's transactions that started after the exec"
assert_le "$(overlap "$TBL")" 2 "transactions at once (cap 2), with the exec"
wait "$LEADER" 2>/dev/null || true

# ============ the leader execs alone on its host ============================
leader_up b 8
touch "$T/b.go"
wait_until 3 execed || fail "the lone leader did not exec: $(cat "$T/b.err")"
no_session() { [ "$(sessions_of h1)" = 0 ]; }
wait_until 3 no_session || fail "the exec'd lone leader's session is still on the coordinator"
assert_eq "$(st .cluster.leader_pid)" 0 "pqshim stat: h1's leader after the lone leader exec'd (pid $LEADER lives on as sleep)"
(pgb h2 4) >"$T/pgb3.out" 2>&1 &
PGB3=$!
bg_track "$PGB3"
h2_all() { [ "$(sql_primary "select count(*) from pg_stat_activity where datname = 'pqt'
	and application_name = 't_cluster_exec_h2' and state = 'active'")" = 2 ]; }
wait_until 5 h2_all || fail "h2 never ran 2 at once"
(PGAPPNAME=t_cluster_exec_new PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h1 "$PSQL" -X -q \
	-v ON_ERROR_STOP=1 -h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres -d pqt -v h="'h1new'" \
	-f "$T/x.sql") >"$T/new.out" 2>&1 || fail "a new process on h1: $(cat "$T/new.out")"
assert_eq "$(sql_primary "select count(*) from $TBL where h = 'h1new'")" 1 "the new process's transaction"
wait "$PGB3" || fail "h2's pgbench: $(cat "$T/pgb3.out")"
assert_le "$(overlap "$TBL")" 2 "transactions at once (cap 2), with a lone leader that exec'd"
kill "$LEADER" 2>/dev/null || true

# ============ the standby execs, alone ======================================
proc_up two work "$TBL"
TWO=$PROC
two_leads() { [ "$(st .cluster.leader_pid)" = "$TWO" ]; }
wait_until 5 two_leads || fail "h1's new process does not lead ($(host_stat h1 "$POL"))"
proc_up sb 10
SB=$PROC
is_sb() { [ "$(st .cluster.standby_pid)" = "$SB" ]; }
wait_until 5 is_sb || fail "h1's second process is not the standby ($(host_stat h1 "$POL"))"
touch "$T/sb.go"
LEADER=$SB
wait_until 3 execed || fail "the standby did not exec: $(cat "$T/sb.err")"
assert_eq "$(st .cluster.standby_pid)" null "pqshim stat: h1's standby after it exec'd (pid $SB lives on as sleep)"
touch "$T/two.go"
done_two() { grep -q DONE "$T/two.out"; }
wait_until 15 done_two || fail "the leader's threads did not finish: $(cat "$T/two.err")"
assert_eq "$(sql_primary "select count(*) from $TBL where h = 'h1two'")" 6 "the leader's transactions"
two_at_once=$(sql_primary "with ev as (select t0 as t, 1 as d from $TBL where h = 'h1two' union all
	select t1, -1 from $TBL where h = 'h1two'),
	run as (select sum(d) over (order by t, d rows unbounded preceding) as c from ev)
	select coalesce(max(c), 0) from run")
assert_eq "$two_at_once" 2 "the leader's transactions at once (2 slots leased, its standby exec'd)"
kill "$SB" 2>/dev/null || true
echo "ok: a leader that execs leads no more (its session goes, the host elects another, the cap holds);"
echo "    a standby that execs is not waited for"
