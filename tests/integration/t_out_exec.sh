#!/usr/bin/env bash
# t_out_exec.sh: a program that exec()s another while its connection is
# inside a transaction gives its slot back; one whose exec fails keeps it.
# Under max_active = 1, wait_timeout = 10s (tests/clients/py_exec.py):
#  1. A1 begins, inserts, then execs a program that does not exist (the exec
#     fails), holds its transaction 1.5 s more, inserts and commits. B1,
#     started once A1's exec has failed, must wait for A1: on the SERVER,
#     B1's row is later than A1's last one (the failed exec freed nothing).
#  2. A2 begins, inserts, then os.execvp("sleep", ...) with PATH
#     /nonexistent-dir:/bin:/usr/bin (a failed attempt, then the exec): its
#     socket closes with the old image (libpq sets close-on-exec), the server
#     ends the session, and the pid lives on as `sleep`. B2's statement must
#     get the slot within 3 s, not time out: its row is on the server, and
#     pqshim stat shows no process record for A2's pid.
# (Before: the record of the pid that exec()ed stayed "alive" (same pid,
# same start time), its slot held by a transaction the server no longer
# had, until `sleep` exited: B2 failed with 53300 after 10 s.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

APP=t_out_exec
CL=$PQT_ROOT/tests/clients/py_exec.py
POL=$(policy_new exec "log = $T/shim.log
[cap]
max_active = 1
wait_timeout = 10s
")
sql_primary "drop table if exists exec_log; create table exec_log (who text, t timestamptz)"
say() { grep -Eq "^($2)" "$T/$1.out"; }
run_bg() { # NAME ARGS...: py_exec.py under the shim, in the background
	local name=$1
	shift
	"$PQSHIM" run -p "$POL" -- "$PY" "$CL" "$@" >"$T/$name.out" 2>"$T/$name.err" &
	eval "PID_$name=$!"
	bg_track "$!"
}
t_of() { sql_primary "select extract(epoch from t) from exec_log where who = '$1'"; }

# 1. a failed exec keeps the slot
run_bg a1 exec-fail "${APP}_a1" exec_log 1.5
wait_until 10 say a1 EXEC-FAILED || fail "A1's exec never failed: $(cat "$T/a1.out" "$T/a1.err")"
run_bg b1 one "${APP}_b1" exec_log
wait_until 15 say a1 COMMITTED || fail "A1 never committed: $(cat "$T/a1.out" "$T/a1.err")"
wait_until 15 say b1 'OK|ERR' || fail "B1 never finished: $(cat "$T/b1.err")"
assert_match "$(cat "$T/b1.out")" '^OK' "B1's statement"
a1_end=$(t_of "${APP}_a1-end") b1=$(t_of "${APP}_b1")
note "A1 committed its last row at $a1_end, B1's row at $b1"
assert_ge "$b1" "$a1_end" "server: B1 ran only after A1's transaction (its failed exec freed nothing)"

# 2. a successful exec gives the slot back
PATH=/nonexistent-dir:/bin:/usr/bin run_bg a2 exec-ok "${APP}_a2" exec_log sleep 20
wait_until 10 say a2 IN-XACT || fail "A2 never began: $(cat "$T/a2.err")"
execed() { [ "$(readlink "/proc/$PID_a2/exe")" != "$(readlink -f "$PY")" ]; }
wait_until 10 execed || fail "A2 never exec()ed"
gone() { [ "$(server_backends "${APP}_a2")" = 0 ]; }
wait_until 10 gone || fail "the server kept A2's session after its exec"
run_bg b2 one "${APP}_b2" exec_log
wait_until 15 say b2 'OK|ERR' || fail "B2 never finished: $(cat "$T/b2.err")"
note "B2: $(cat "$T/b2.out")"
assert_match "$(cat "$T/b2.out")" '^OK' "B2's statement after A2's exec"
assert_le "$(awk '{ print $2 }' "$T/b2.out")" 3 "B2's wait for the slot (s)"
assert_eq "$(sql_primary "select count(*) from exec_log where who = '${APP}_b2'")" 1 "server: B2's row"
assert_eq "$(jqp "$POL" "[.processes[] | select(.pid == $PID_a2)] | length")" 0 \
	"stat: a process record for A2's pid after its exec"
assert_eq "$(jqp "$POL" .cap.active)" 0 "stat: slots held"
kill -0 "$PID_a2" 2>/dev/null || fail "A2's sleep ended early"
