#!/usr/bin/env bash
# t_out_stopped_lock.sh: a process stopped (SIGSTOP) while it holds the
# segment's cap lock makes nobody hang. A robust mutex hands on a dead
# holder's lock, not a stopped one's: every wait on it is bounded.
#  - max_active = 1, wait_timeout = 2s. A psql session under the shim holds
#    the only slot (inside BEGIN); another was killed -9 (a record for the
#    next start-up to reap). tests/clients/c_cap_lock.c maps the
#    segment file, takes its cap's mutex and stops itself (state T).
#  - A new psycopg2 program under the shim: its start-up ends within the
#    lock's fixed bound (1 s) with one line on stderr, "pqshim: the
#    segment's lock is held by pid N, which is stopped: start-up went on
#    without it ...", and its `insert` (the slot is taken: the slow path, on
#    the lock) fails after wait_timeout with SQLSTATE 53300 and "pqshim: no
#    slot free after waiting W s: the segment's lock is held by pid N, which
#    is stopped (max_active = 1, wait_timeout = 2s, policy P)". The server
#    got no row. The whole program ends in under 8 s.
#  - The holder commits: its connection, idle, keeps the slot parked
#    (README "The cap"), and a parked slot moves to another program only
#    through the lock: the next program is refused as client 1 was. The
#    holder then closes (a parked slot goes back at PQfinish without the
#    lock); the next program's insert takes the free slot on the fast path
#    and runs (one row), the lock still held by the stopped process.
#  - SIGCONT: the lock is let go; the next program's insert runs with no
#    word about the lock, at once.
# (Before: the new program hung for good in its start-up, on the lock, in
# the reap's recount: killed here after 15 s, rc 137.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

POL=$(policy_new stoplock "[cap]
max_active = 1
wait_timeout = 2s
")
SEG=$(sed -n 's/^segment = //p' "$POL")
sql_primary "drop table if exists out_lock; create table out_lock(n int)" >/dev/null
cc -std=gnu11 -D_GNU_SOURCE -I"$PQT_ROOT/shim" -I"$PQT_ROOT/policy" -I/usr/include/postgresql \
	"$PQT_ROOT/tests/clients/c_cap_lock.c" -o "$T/c_cap_lock" -lpthread ||
	fail "cannot build c_cap_lock"
cat >"$T/client.py" <<'EOF_PY'
import sys, time, psycopg2
t0 = time.monotonic()
c = psycopg2.connect(application_name="t_out_stopped_lock"); c.autocommit = True
t1 = time.monotonic()
try:
    c.cursor().execute("insert into out_lock values (%s)" % sys.argv[1])
    print("RAN %.2f" % (t1 - t0))
except psycopg2.Error as e:
    print("REFUSED %.2f %.2f %s %s" % (t1 - t0, time.monotonic() - t1, e.pgcode,
                                       str(e).strip().replace("\n", " ")))
EOF_PY
# client N: a new program under the shim inserts N; $OUT, $ERR, $RC, $SECS
client() {
	local t0 t1
	t0=$(date +%s.%N)
	RC=0
	LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL timeout -s KILL 15 "$PY" "$T/client.py" "$1" \
		>"$T/c$1.out" 2>"$T/c$1.err" || RC=$?
	t1=$(date +%s.%N)
	SECS=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
	OUT=$(cat "$T/c$1.out") ERR=$(cat "$T/c$1.err")
	note "client $1: rc $RC, $SECS s: $OUT / $ERR"
}
rows() { sql_primary "select count(*) from out_lock"; }

PGAPPNAME=t_out_stopped_lock_holder psql_hold holder "$POL"
psql_feed holder "begin;" "select 1;"
assert_eq "$(jqp "$POL" '.cap.active')" 1 "stat: the holder's slot"
SEGFILE=/dev/shm/pqshim.$(id -u).$SEG
# a process killed -9 (connected, no slot): its record is for the next
# start-up to reap, and recount under the lock (no `pqshim stat` from here
# on: it would reap it first)
PGAPPNAME=t_out_stopped_lock_victim psql_hold victim "$POL"
psql_feed victim '\echo connected'
kill -KILL "${HELD_PID[victim]}"
wait "${HELD_PID[victim]}" 2>/dev/null || true
held_close victim
[ -f "$SEGFILE" ] || fail "no segment file $SEGFILE"

held_start locker "$T/c_cap_lock" "$SEGFILE"
held_ready locker '^LOCKED'
LPID=$(sed -n 's/^LOCKED //p' "$T/locker.out")
assert_eq "$LPID" "${HELD_PID[locker]}" "the locker's pid"
stopped() { [ "$(awk '{print $3}' "/proc/$LPID/stat" 2>/dev/null)" = T ]; }
wait_until 5 stopped || fail "the locker did not stop"

# --- the lock held by a stopped process --------------------------------------
HELD="the segment's lock is held by pid $LPID, which is stopped"
client 1
assert_eq "$RC" 0 "client 1: exit status (137: killed, it hung)"
assert_match "$OUT" "^REFUSED [0-9.]+ [0-9.]+ 53300 " "client 1: refused with 53300"
read -r _ conn_s stmt_s _ <<<"$OUT"
assert_le "$conn_s" 2.5 "client 1: seconds to connect (the start-up's bound is 1 s)"
assert_ge "$stmt_s" 1.9 "client 1: seconds the statement waited (wait_timeout = 2s)"
assert_le "$stmt_s" 4.5 "client 1: seconds the statement waited"
assert_le "$SECS" 8 "client 1: seconds in all"
want="pqshim: no slot free after waiting [0-9.]+ s: $HELD \\(max_active = 1, wait_timeout = 2s, policy $POL\\)"
assert_match "${OUT#* 53300 }" "^$want\$" "client 1: the statement's error"
assert_match "$ERR" "pqshim\\[[0-9]+\\]: $HELD: start-up went on without it" "client 1: the start-up's line"
assert_eq "$(grep -c "start-up went on" "$T/c1.err")" 1 "client 1: one start-up line"
assert_eq "$(rows)" 0 "server: the refused insert never came"

# The holder's slot parked: it moves only through the lock.
psql_feed holder "commit;"
client 2
assert_match "$OUT" "^REFUSED [0-9.]+ [0-9.]+ 53300 " "client 2: a parked slot, the lock held"
assert_eq "$(rows)" 0 "server: client 2's refused insert never came"
# The slot comes free; the fast path needs no lock.
held_end holder 0
client 2
assert_eq "$RC" 0 "client 2: exit status"
assert_match "$OUT" "^RAN " "client 2: the insert on a free slot, the lock still held"
assert_eq "$(rows)" 1 "server: client 2's row"
stopped || fail "the locker is no longer stopped"

# --- SIGCONT: everything resumes ---------------------------------------------
kill -CONT "$LPID"
held_ready locker '^UNLOCKED'
held_end locker 0
client 3
assert_eq "$RC" 0 "client 3: exit status"
assert_match "$OUT" "^RAN " "client 3: the insert after SIGCONT"
assert_le "$SECS" 3 "client 3: seconds in all (no lock wait)"
grep -q "lock is held" "$T/c3.err" && fail "client 3 speaks of the lock: $ERR"
assert_eq "$(rows)" 2 "server: client 3's row"
echo "ok: t_out_stopped_lock"
