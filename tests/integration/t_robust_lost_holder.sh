#!/usr/bin/env bash
# t_robust_lost_holder.sh - a connection of another live thread whose
# backend the server ended gives its slot back without that thread's call.
#  - max_active = 1, wait_timeout = 10s.  psycopg2 thread A opens a
#    transaction (its slot held: stat shows it) and then sits in its own
#    code.  The test ends A's backend (pg_terminate_backend) and waits until
#    the server no longer lists it.  Then thread B of the same process runs
#    a statement: the server must start it within 2 s of the request (B's
#    wait looks at the process's connections between slices; A's socket
#    shows the server's end closed), far below wait_timeout.
#  - stat shows no slot held once B is done, while A's connection is still
#    open; then A uses it and gets libpq's error (not a pqshim one), and
#    nothing is left held or recorded.
#  - nobody waits (max_active = 2): thread C runs a statement every 50 ms
#    beside A; once A's backend is gone, stat shows A's connection holding no
#    slot within 5 s (the tick C's statements run looks).
#  Before the change, A kept its slot until A itself called again: B waited
#  its 10 s and failed with 53300, and in the second part A held its slot
#  for as long as it slept.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
APP=t_robust_lost
POL=$(policy_new lost "[cap]
max_active = 1
wait_timeout = 10s
")
# start POLICY APP SUFFIX [ARGS...]: the client on $T/in$SUFFIX (fd FD),
# its output in $T/out$SUFFIX; P its pid, B A's backend once it holds.
start() {
	local pol=$1 app=$2 n=$3
	shift 3
	mkfifo "$T/in$n"
	"$PQSHIM" run -p "$pol" -- "$PY" "$ROB" lost-holder --app "$app" "$@" \
		<"$T/in$n" >"$T/out$n" 2>"$T/err$n" &
	P=$!
	bg_track $P
	exec {FD}>"$T/in$n"
	wait_until 10 grep -q '^HELD' "$T/out$n" || fail "A never held its slot: $(cat "$T/err$n")"
	B=$(sed -n 's/^HELD //p' "$T/out$n")
}
start "$POL" "$APP" ""
assert_eq "$(jqp "$POL" .cap.active)" 1 "stat: A holds the slot"
assert_eq "$(server_activity "${APP}_a" state)" "idle in transaction" "the server: A idle in a transaction"
assert_eq "$(sql_primary "select pg_terminate_backend($B)")" t "backend $B ended"
gone() { [ "$(sql_primary "select count(*) from pg_stat_activity where pid = $B")" = 0 ]; }
wait_until 10 gone || fail "backend $B still listed by the server"
t_go=$EPOCHREALTIME
echo go >&"$FD"
wait_until 15 grep -q '^RESULT' "$T/out" || fail "B's statement neither ran nor failed in 15 s: $(cat "$T/err")"
R=$(sed -n 's/^RESULT //p' "$T/out")
note "B: $R"
assert_eq "$(jq .ok <<<"$R")" true "B's statement ran ($(jq -r .msg <<<"$R"))"
# what the server saw: B's statement started within 2 s of the request
assert_le "$(jq -r "(.srv_start - $t_go) * 1000 | floor" <<<"$R")" 2000 \
	"ms from B's request to its start on the server (wait_timeout 10 s)"
assert_eq "$(jqp "$POL" .cap.active)" 0 "stat: no slot held once B is done (A still open)"
assert_eq "$(jqp "$POL" '[.connections[] | select(.slot != "none")] | length')" 0 \
	"stat: A's connection holds no slot"
echo wake >&"$FD"
wait_until 10 grep -q '^A_AFTER' "$T/out" || fail "A never used its connection again: $(cat "$T/err")"
AA=$(sed -n 's/^A_AFTER //p' "$T/out")
note "A afterwards: $AA"
assert_eq "$(jq .ok <<<"$AA")" false "A's statement on its lost connection fails"
[[ $(jq -r .msg <<<"$AA") != *pqshim* ]] || fail "A's error is the shim's: $AA"
exec {FD}>&-
wait $P || fail "client exit status: $(cat "$T/err")"
assert_eq "$(jqp "$POL" '[.cap.active, (.connections | length)] | map(tostring) | join(" ")')" "0 0" \
	"nothing held or recorded after"

# --- nobody waits: the tick of another thread's statements notices -----------
APP2=t_robust_lost2
POL2=$(policy_new lost2 "[cap]
max_active = 2
wait_timeout = 10s
")
start "$POL2" "$APP2" 2 --looper
a_slot() { jqp "$POL2" "[.connections[] | select(.application_name == \"${APP2}_a\") | .slot] | join(\",\")"; }
assert_eq "$(a_slot)" held "stat: A holds a slot (thread C runs statements beside it)"
assert_eq "$(sql_primary "select pg_terminate_backend($B)")" t "backend $B ended"
wait_until 10 gone || fail "backend $B still listed by the server"
t0=$EPOCHREALTIME
a_free() { [ "$(a_slot)" = none ]; }
wait_until 5 a_free || fail "A's lost connection still holds its slot 5 s on (nobody waits; C's statements tick)"
note "A's slot back $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s after its backend was gone, without a waiter"
echo go >&"$FD"
wait_until 15 grep -q '^RESULT' "$T/out2" || fail "part 2: B's statement: $(cat "$T/err2")"
echo wake >&"$FD"
wait_until 10 grep -q '^A_AFTER' "$T/out2" || fail "part 2: A never used its connection again: $(cat "$T/err2")"
exec {FD}>&-
wait $P || fail "part 2: client exit status: $(cat "$T/err2")"
