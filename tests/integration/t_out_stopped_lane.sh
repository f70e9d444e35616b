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
client_start() { # WHO APP: a new program under the shim runs WHO's transaction
	bg_client "$1" env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" "$PY" "$T/client.py" "$1" "$2" $TBL
}
waiting_is() { [ "$(jqp "$POL" .cap.waiting)" = "$1" ]; }
stopped() { [ "$(pid_state "${CPID[$1]}")" = T ]; }
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

# A (APP_A) holds a slot; S (APP_S) queues and is stopped; N (APP_N) queues
# behind it; A commits, the grant goes to the stopped S: N must run, from A's
# end within 1.5 s, and S, still stopped, has no row
behind_stopped() { # A APP_A S APP_S N APP_N
	holder "$1" "$2"
	client_start "$3" "$4"
	wait_until 10 waiting_is 1 || fail "$3 did not queue"
	stop_ "$3"
	client_start "$5" "$6"
	wait_until 10 waiting_is 2 || fail "$5 did not queue behind $3"
	holder_commit "$1"
	bg_client_end "$5"
	assert_match "$OUT" "^RAN " "client $5: ran while $3 was stopped (53300: $3's grant held the slot)"
	assert_eq "$(rows "$5")" 1 "server: $5's transaction"
	note "ms from $1's end to $5's start: $(gap "$1" "$5")"
	assert_ge "$(gap "$1" "$5")" 0 "server: $5 started after $1 ended"
	assert_le "$(gap "$1" "$5")" 1500 "server: ms from $1's end to $5's start"
	stopped "$3" || fail "$3 no longer stopped"
	assert_eq "$(sql_primary "select count(*) from $TBL where who = '$3'")" 0 "server: nothing from the stopped $3"
}

# --- 1. a capped lane ---------------------------------------------------------
behind_stopped A t_osl_rep_A B t_osl_rep_B C t_osl_rep_C

# the audit (a process killed -9 has a record to reap) counts the revoked grant once
killed_under "$POL" t_osl_victim
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 1" \
	"stat after the audit: active waiting (B queued again, holding nothing)"
assert_eq "$(lane_ reports)" "0 1" "stat after the audit: lane reports active waiting"

kill -CONT "${CPID[B]}"    # B takes its place back and runs
bg_client_end B
assert_match "$OUT" "^RAN " "client B: ran after SIGCONT, within its wait_timeout"
assert_eq "$(rows B)" 1 "server: B's transaction"
note "ms from C's end to B's start: $(gap C B)"
assert_ge "$(gap C B)" 0 "server: B started after C ended"
assert_eq "$(xact_overlap $TBL)" 1 "server: most reports transactions at once (lane max 1)"
held_end A 0

# --- 2. an exclusive lane -----------------------------------------------------
behind_stopped A2 t_osl_web_A2 M t_osl_mig_M C2 t_osl_web_C2
client_start D2 t_osl_web_D2
bg_client_end D2
assert_match "$OUT" "^RAN " "client D2: ran while M, revoked, was stopped"
stopped M || fail "M no longer stopped"
assert_eq "$(lane_ migration)" "0 1" "stat: lane migration active waiting (M revoked, queued)"

kill -CONT "${CPID[M]}"
bg_client_end M
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
