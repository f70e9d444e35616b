#!/usr/bin/env bash
# t_out_stopped_lane.sh: a waiter stopped (SIGSTOP) at the head of a lane's
# queue is granted the lane's slot and cannot claim it: its grant is revoked
# (it keeps its place) and the next waiter runs; the same for an exclusive
# lane's grant, which held back every lane.
# Every transaction logs clock_timestamp() at its start (t0) and end (t1)
# into one table (xact_log), with who ran it.
#  1. Lane "reports" (max_active = 1, wait_timeout = 8s). A psql session
#     (reports) holds its slot inside a transaction. Program B (psycopg2,
#     reports) queues and is stopped (state T); C (reports) queues behind.
#     A commits: the slot goes to the stopped B. From the rows: C starts
#     within 1.5 s of A's end while B, still stopped, has no row; never two
#     reports transactions at once. stat after an audit (a process killed
#     -9 sets one off): 0 active, 1 waiting (B's revoked grant counted once).
#     SIGCONT: B gets its turn back and runs after C.
#  2. Lane "migration" (exclusive). A2 (the default lane) runs a transaction;
#     M (migration) queues, then is stopped; C2 (default) queues behind it
#     (an exclusive waiter holds every lane back). A2 commits: the exclusive
#     grant goes to the stopped M. C2 starts within 1.5 s of A2's end; then,
#     while M is still stopped, D2 (default) runs without waiting. SIGCONT:
#     M runs, and nothing overlaps it.
# At the end: 0 active, 0 waiting, 0 timeouts.
# (Before: the stopped B held the lane; C got 53300 "no slot free in lane
# "reports" after waiting 8.00 s"; C2 the same in the default lane.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

TBL=out_stopl
POL=$(policy_new stoplane "[cap]
wait_timeout = 8s

[lane \"reports\"]
match = application_name=t_osl_rep*
max_active = 1
wait_timeout = 8s

[lane \"migration\"]
match = application_name=t_osl_mig*
exclusive = yes
wait_timeout = 8s
")
"$PQSHIM" check "$POL" >/dev/null || fail "pqshim check refuses the policy: $("$PQSHIM" check "$POL" 2>&1)"
xact_log $TBL 0.2
sql_primary "alter table $TBL add column who text" >/dev/null
cat >"$T/client.py" <<'EOF_PY'
import sys, time, psycopg2
who, app, tbl = sys.argv[1:4]
c = psycopg2.connect(application_name=app)
print("CONNECTED", flush=True)
t0 = time.monotonic()
try:
    cur = c.cursor()
    cur.execute("insert into %s (t0, who) values (clock_timestamp(), %%s) returning id" % tbl,
                (who,))
    (xid,) = cur.fetchone()
    cur.execute("select pg_sleep(0.2)")
    cur.execute("update %s set t1 = clock_timestamp() where id = %%s" % tbl, (xid,))
    c.commit()
    print("RAN %.2f" % (time.monotonic() - t0), flush=True)
except psycopg2.Error as e:
    print("REFUSED %.2f %s %s" % (time.monotonic() - t0, e.pgcode,
                                  str(e).strip().replace("\n", " ")), flush=True)
EOF_PY
declare -A CPID
client_start() { # WHO APP: a new program under the shim runs WHO's transaction
	LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL "$PY" "$T/client.py" "$1" "$2" $TBL \
		>"$T/$1.out" 2>"$T/$1.err" &
	CPID[$1]=$!
	bg_track "$!"
}
done_() { grep -q '^RAN\|^REFUSED' "$T/$1.out"; }
client_end() { # WHO: waits (bounded) for its end; $OUT
	wait_until 12 done_ "$1" || fail "client $1 did not end: $(cat "$T/$1.out" "$T/$1.err")"
	wait "${CPID[$1]}" || fail "client $1: exit status $?"
	OUT=$(grep -v "^CONNECTED" "$T/$1.out")
	note "client $1: $OUT / $(cat "$T/$1.err")"
}
waiting_is() { [ "$(jqp "$POL" .cap.waiting)" = "$1" ]; }
state_of() { awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null; }
stopped() { [ "$(state_of "${CPID[$1]}")" = T ]; }
stop_() { # WHO
	kill -STOP "${CPID[$1]}"
	wait_until 5 stopped "$1" || fail "$1 did not stop"
}
rows() { sql_primary "select count(*) from $TBL where who = '$1' and t1 is not null"; }
gap() { # ms from the end of $1's transaction to the start of $2's
	sql_primary "select round(extract(epoch from (select t0 from $TBL where who = '$2')
		- (select t1 from $TBL where who = '$1')) * 1000)"
}
overlapping() { # transactions of others open at some instant of WHO's
	sql_primary "select count(*) from $TBL x, $TBL m where m.who = '$1' and x.who <> '$1'
		and x.t0 < m.t1 and x.t1 > m.t0"
}
holder() { # NAME APP: a psql session under the shim runs NAME's transaction up to its update
	PGAPPNAME=$2 psql_hold "$1" "$POL"
	psql_feed "$1" "begin;" \
		"insert into $TBL (t0, who) values (clock_timestamp(), '$1') returning id \\gset"
	assert_eq "$(jqp "$POL" '.cap.active')" 1 "stat: $1 holds a slot"
}
holder_commit() { psql_feed "$1" "update $TBL set t1 = clock_timestamp() where id = :id;" "commit;"; }
lane_() { jqp "$POL" ".lanes[] | select(.name == \"$1\") | \"\\(.active) \\(.waiting)\""; }

# --- 1. a capped lane ---------------------------------------------------------
holder A t_osl_rep_A
client_start B t_osl_rep_B
wait_until 10 waiting_is 1 || fail "B did not queue"
stop_ B
client_start C t_osl_rep_C
wait_until 10 waiting_is 2 || fail "C did not queue behind B"
holder_commit A            # the lane's slot goes to the stopped B, then on to C
client_end C
assert_match "$OUT" "^RAN " "client C: ran while B was stopped (53300: B held the lane)"
assert_eq "$(rows C)" 1 "server: C's transaction"
note "ms from A's end to C's start: $(gap A C)"
assert_ge "$(gap A C)" 0 "server: C started after A ended"
assert_le "$(gap A C)" 1500 "server: ms from A's end to C's start"
stopped B || fail "B no longer stopped"
assert_eq "$(sql_primary "select count(*) from $TBL where who = 'B'")" 0 "server: nothing from the stopped B"

# the audit (a process killed -9 has a record to reap) counts the revoked grant once
PGAPPNAME=t_osl_victim psql_hold victim "$POL"
psql_feed victim '\echo connected'
kill -KILL "${HELD_PID[victim]}"
wait "${HELD_PID[victim]}" 2>/dev/null || true
held_close victim
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 1" \
	"stat after the audit: active waiting (B queued again, holding nothing)"
assert_eq "$(lane_ reports)" "0 1" "stat after the audit: lane reports active waiting"

kill -CONT "${CPID[B]}"    # B takes its place back and runs
client_end B
assert_match "$OUT" "^RAN " "client B: ran after SIGCONT, within its wait_timeout"
assert_eq "$(rows B)" 1 "server: B's transaction"
note "ms from C's end to B's start: $(gap C B)"
assert_ge "$(gap C B)" 0 "server: B started after C ended"
assert_eq "$(xact_overlap $TBL)" 1 "server: most reports transactions at once (lane max 1)"
held_end A 0

# --- 2. an exclusive lane -----------------------------------------------------
holder A2 t_osl_web_A2
client_start M t_osl_mig_M
wait_until 10 waiting_is 1 || fail "M did not queue"
stop_ M
client_start C2 t_osl_web_C2
wait_until 10 waiting_is 2 || fail "C2 did not queue behind the exclusive M"
holder_commit A2           # the exclusive grant goes to the stopped M, then C2 is let in
client_end C2
assert_match "$OUT" "^RAN " "client C2: ran while M was stopped (53300: M's grant held every lane)"
note "ms from A2's end to C2's start: $(gap A2 C2)"
assert_ge "$(gap A2 C2)" 0 "server: C2 started after A2 ended"
assert_le "$(gap A2 C2)" 1500 "server: ms from A2's end to C2's start"
client_start D2 t_osl_web_D2
client_end D2
assert_match "$OUT" "^RAN " "client D2: ran while M, revoked, was stopped"
stopped M || fail "M no longer stopped"
assert_eq "$(sql_primary "select count(*) from $TBL where who = 'M'")" 0 "server: nothing from the stopped M"
assert_eq "$(lane_ migration)" "0 1" "stat: lane migration active waiting (M revoked, queued)"

kill -CONT "${CPID[M]}"
client_end M
assert_match "$OUT" "^RAN " "client M: ran after SIGCONT, within its wait_timeout"
assert_eq "$(rows M)" 1 "server: M's transaction"
assert_eq "$(overlapping M)" 0 "server: transactions that overlapped the exclusive M's"
assert_ge "$(gap D2 M)" 0 "server: M started after D2 ended"
held_end A2 0

assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting) \(.cap.timeouts)"')" "0 0 0" \
	"stat at the end: active waiting timeouts"
assert_eq "$(jqp "$POL" '[.lanes[] | .active + .waiting + .timeouts] | add')" 0 \
	"stat at the end: the lanes' active + waiting + timeouts"
echo "ok: t_out_stopped_lane: C $(gap A C) ms and C2 $(gap A2 C2) ms after the stopped waiter's grant"
