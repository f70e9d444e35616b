#!/usr/bin/env bash
# t_out_stopped_waiter.sh: a waiter stopped (SIGSTOP) at the head of the
# cap's queue is handed the slot and cannot claim it: its grant is revoked
# (it keeps its place) and the next waiter runs.
#  - max_active = 1, wait_timeout = 8s. A psql session under the shim holds
#    the only slot (inside BEGIN). Program B (psycopg2, under the shim)
#    queues for the slot with an insert, and is stopped (state T). Program C
#    queues behind it.
#  - A inserts its row and commits: the slot goes to B, which is stopped.
#    The server gets C's row within 1.5 s of A's (by clock_timestamp()),
#    while B is still stopped and has no row.
#  - With C done and B still stopped (its grant revoked, queued again), the
#    audit that a process killed -9 sets off counts 0 active, 1 waiting:
#    the revoked slot is counted once, not held by B.
#  - SIGCONT: B takes its place back, gets the free slot and runs (well
#    within its wait_timeout): its row comes after C's.
# (Before: the stopped B held the slot; C got 53300 after its 8 s.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

POL=$(policy_new stopwait "[cap]
max_active = 1
wait_timeout = 8s
")
sql_primary "drop table if exists out_stopw;
	create table out_stopw(who text, at timestamptz default clock_timestamp())" >/dev/null
cat >"$T/client.py" <<'EOF_PY'
import sys, time, psycopg2
c = psycopg2.connect(application_name="t_out_stopped_waiter"); c.autocommit = True
print("CONNECTED", flush=True)
t0 = time.monotonic()
try:
    c.cursor().execute("insert into out_stopw(who) values ('%s')" % sys.argv[1])
    print("RAN %.2f" % (time.monotonic() - t0), flush=True)
except psycopg2.Error as e:
    print("REFUSED %.2f %s %s" % (time.monotonic() - t0, e.pgcode,
                                  str(e).strip().replace("\n", " ")), flush=True)
EOF_PY
client_start() { # NAME: a new program under the shim inserts NAME
	bg_client "$1" env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" "$PY" "$T/client.py" "$1"
}
waiting_is() { [ "$(jqp "$POL" .cap.waiting)" = "$1" ]; }
b_stopped() { [ "$(pid_state "${CPID[B]}")" = T ]; }
row() { sql_primary "select count(*) from out_stopw where who = '$1'"; }
gap() { # ms from $1's row to $2's
	sql_primary "select round(extract(epoch from (select at from out_stopw where who = '$2')
		- (select at from out_stopw where who = '$1')) * 1000)"
}

PGAPPNAME=t_out_stopped_waiter_holder psql_hold holder "$POL"
psql_feed holder "begin;" "select 1;"
assert_eq "$(jqp "$POL" '.cap.active')" 1 "stat: A holds the slot"

client_start B
wait_until 10 waiting_is 1 || fail "B did not queue"
kill -STOP "${CPID[B]}"
wait_until 5 b_stopped || fail "B did not stop"
client_start C
wait_until 10 waiting_is 2 || fail "C did not queue behind B"

# --- A commits: the slot goes to the stopped B, then on to C -----------------
psql_feed holder "insert into out_stopw(who) values ('A');" "commit;"
bg_client_end C
assert_match "$OUT" "^RAN " "client C: ran while B was stopped (53300: B held the slot)"
assert_eq "$(row C)" 1 "server: C's row"
note "ms from A to C: $(gap A C)"
assert_le "$(gap A C)" 1500 "server: ms from A's commit to C's row"
b_stopped || fail "B no longer stopped"
assert_eq "$(row B)" 0 "server: no row from the stopped B"

# the audit (a process killed -9 has a record to reap) counts the revoked grant once
killed_under "$POL" t_out_stopped_waiter_victim
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 1" \
	"stat after the audit: active waiting (B queued again, holding nothing)"

# --- SIGCONT: B takes its place back and runs ---------------------------------
kill -CONT "${CPID[B]}"
bg_client_end B
assert_match "$OUT" "^RAN " "client B: ran after SIGCONT, within its wait_timeout"
assert_eq "$(row B)" 1 "server: B's row"
note "ms from C to B: $(gap C B)"
assert_ge "$(gap C B)" 0 "server: B's row after C's"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting) \(.cap.timeouts)"')" "0 0 0" \
	"stat at the end: active waiting timeouts"
held_end holder 0
echo "ok: t_out_stopped_waiter"
