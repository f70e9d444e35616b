#!/usr/bin/env bash
# t_cluster_fork.sh: scope = cluster, the leader's coordination session and
# what outlives it.
#  - fork and exec: a psycopg2 process (host h1) leads its host and holds a
#    slot lock on the coordinator; it forks a child that stays in Python and
#    one that execs sleep; the parent is killed with kill -9: the server ends
#    the leader's session within 1 s although both children still run (the
#    fork child closed its copy of the socket, the exec closed it), and its
#    slot lock is gone; a new process on h1 leads again (pqshim stat: leaders
#    2, state ok) and runs its statement.
#  - linger: h1 holds an idle lease (one psycopg2 process that ran 4
#    threads' statements, then waits); host h2 starts 4 clients under the
#    same cap of 4: the coordinator shows h2 holding all 4 slots within 1 s
#    (the idle slots came back; LEASE_LINGER_MS is 100 ms).
#  - a busy host: h1 runs 4 clients on all 4 slots (none of its own waits,
#    so it announces no demand); h2 starts 4 clients: within 1 s it holds
#    its half.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"

coord_db pqt_coordf_$$
POL=$(cluster_policy fork 4 10s)
leaders() { # the leaders' sessions on the coordinator (their application_name)
	sql_primary "select count(*) from pg_stat_activity where datname = '$CDB'
		and application_name like 'pqshim %'"
}
locks_of() { # HOST: slot locks held by that host's leader
	sql_primary "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid
		where a.datname = '$CDB' and a.application_name like 'pqshim % $1%'
		and l.locktype = 'advisory' and l.objsubid = 2 and l.objid < 1073741824::oid"
}
host_up h1
host_up h2

# ============ fork and exec, then the parent is killed =======================
cat >"$T/forker.py" <<'EOF'
import os, sys, time, psycopg2
c = psycopg2.connect(application_name="t_cluster_fork")
cur = c.cursor()
cur.execute("select 1")          # a slot: this process leads h1 and leases it
c.commit()
kids = []
pid = os.fork()
if pid == 0:                     # stays in Python, never uses libpq again
    time.sleep(60)
    os._exit(0)
kids.append(pid)
pid = os.fork()
if pid == 0:
    os.execvp("sleep", ["sleep", "60"])
kids.append(pid)
print("KIDS %d %d" % tuple(kids), flush=True)
cur.execute("begin; select 1")   # holds the slot while it waits to be killed
time.sleep(60)
EOF
(PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h1 "$PY" "$T/forker.py") >"$T/forker.out" 2>"$T/forker.err" &
FORKER=$!
bg_track "$FORKER"
kids() { grep -q '^KIDS' "$T/forker.out"; }
wait_until 10 kids || fail "the forker never forked: $(cat "$T/forker.err")"
read -r _ K1 K2 <"$T/forker.out"
bg_track "$K1" "$K2"
held() { [ "$(locks_of h1)" = 1 ]; }
wait_until 5 held || fail "h1's leader holds no slot lock: $(cat "$T/fork.log")"
assert_eq "$(leaders)" 1 "coordinator: leader sessions (after the forks)"
t_kill=$EPOCHREALTIME
kill -9 "$FORKER"
no_leader() { [ "$(leaders)" = 0 ]; }
wait_until 3 no_leader || fail "the killed leader's session is still on the coordinator (children alive)"
took=$(awk -v a="$t_kill" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
echo "fork/exec: the killed leader's session left the coordinator within ${took}s; its children still run"
assert_le "$took" 1.0 "seconds until the server ended the killed leader's session"
kill -0 "$K1" && kill -0 "$K2" || fail "a child died with the parent"
assert_eq "$(locks_of h1)" 0 "coordinator: h1's slot locks after the kill"
wait "$FORKER" 2>/dev/null || true
(PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h1 "$PSQL" -X -A -t -q -h "$PQT_SOCKDIR" \
	-p "$PQT_PRIMARY_PORT" -U postgres -d pqt -c "select 'again'") >"$T/again.out" 2>&1 ||
	fail "a new process on h1: $(cat "$T/again.out")"
assert_eq "$(cat "$T/again.out")" again "a new process on h1 runs"
kill -9 "$K1" "$K2" 2>/dev/null || true

# ============ an idle lease goes back to a host that wants it ==============
idle_lease h1 "$POL" t_cluster_idle 20 0.01
assert_ge "$(locks_of h1)" 1 "coordinator: h1 keeps its idle lease while nobody else wants"
printf 'begin;\nselect pg_sleep(0.05);\ncommit;\n' >"$T/x50.sql"
t_want=$EPOCHREALTIME
(PGAPPNAME=t_cluster_want PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h2 "$PGBENCH" -n \
	-h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres -c 4 -j 4 -T 4 -f "$T/x50.sql" pqt) \
	>"$T/want.out" 2>&1 &
WANT=$!
bg_track "$WANT"
all4() { [ "$(locks_of h2)" = 4 ]; }
wait_until 3 all4 || fail "h2 never held the 4 slots (h1 holds $(locks_of h1))"
took=$(awk -v a="$t_want" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
echo "linger: h2 held all 4 slots ${took}s after its 4 clients started (h1's idle lease came back)"
assert_le "$took" 1.0 "seconds until h1's idle lease was h2's"
assert_eq "$(locks_of h1)" 0 "coordinator: h1's slot locks while h2 wants them all"
wait "$WANT" || fail "h2's pgbench: $(cat "$T/want.out")"
kill "$IDLE" 2>/dev/null || true
wait "$IDLE" 2>/dev/null || true

# ============ a busy host with every slot and no waiter shares with a newcomer
# h1: 4 clients, 4 slots, all busy, nobody of its own waiting (so it wants
# nothing more); h2 starts 4 clients: within 1 s it holds its half (2).
pgb4() { # HOST SECONDS
	PGAPPNAME=t_cluster_busy_$1 PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host "$1" "$PGBENCH" -n \
		-h "$PQT_SOCKDIR" -p "$PQT_PRIMARY_PORT" -U postgres -c 4 -j 4 -T "$2" -f "$T/x50.sql" pqt
}
(pgb4 h1 5) >"$T/busy1.out" 2>&1 &
B1=$!
bg_track "$B1"
h1_all() { [ "$(locks_of h1)" = 4 ]; }
wait_until 5 h1_all || fail "h1 never held the 4 slots"
sleep 0.5
t_new=$EPOCHREALTIME
(pgb4 h2 3) >"$T/busy2.out" 2>&1 &
B2=$!
bg_track "$B2"
half() { [ "$(locks_of h2)" -ge 2 ]; }
wait_until 3 half || fail "h2 never got its half from the busy h1 (h1 $(locks_of h1), h2 $(locks_of h2))"
took=$(awk -v a="$t_new" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
echo "busy host: h2 held its half of the slots ${took}s after its clients started (h1 busy with all 4)"
assert_le "$took" 1.0 "seconds until the newcomer held its half"
wait "$B1" || fail "h1's pgbench: $(cat "$T/busy1.out")"
wait "$B2" || fail "h2's pgbench: $(cat "$T/busy2.out")"
echo "ok: fork and exec never keep a dead leader's session; an idle lease goes to the host that wants it;"
echo "    a busy host shares with a newcomer"
