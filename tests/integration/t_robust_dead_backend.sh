#!/usr/bin/env bash
# t_robust_dead_backend.sh - a connection whose backend the server ended
# holds no slot, and the next statement never waits past wait_timeout.
#  - max_active = 1, wait_timeout = 2s.  async psycopg2 (async_=True and
#    extras.wait_select): connection A sends `select pg_sleep(60)`; the test
#    ends A's backend with pg_terminate_backend and A's poll fails.  Then a
#    new async connection B of the same thread runs `select 1`: it must run
#    (A holds nothing any more) or fail with 53300, within wait_timeout
#    (+ 1 s) - never hang.  Afterwards, with A still open (dead), stat shows
#    no active slot.
#  - the same with synchronous psycopg2, A ended while idle in a transaction.
#  Before the fix, A kept its slot (libpq's poll failed in PQconsumeInput,
#  which the shim never sees), B's send was deferred behind it, and nothing
#  ever woke it: the program hung in select().
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
POL=$(policy_new dead "[cap]
max_active = 1
wait_timeout = 2s
")
for mode in async sync; do
	app=t_robust_dead_$mode
	mkfifo "$T/$mode.in"
	"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" dead-backend --app "$app" --mode "$mode" \
		<"$T/$mode.in" >"$T/$mode.out" 2>"$T/$mode.err" &
	P=$!
	bg_track $P
	exec {FD}>"$T/$mode.in"
	wait_until 10 grep -q '^SENT' "$T/$mode.out" || fail "$mode: never sent: $(cat "$T/$mode.err")"
	B=$(sed -n 's/^BACKEND //p' "$T/$mode.out")
	assert_eq "$(jqp "$POL" .cap.active)" 1 "$mode: stat: A holds the slot before its backend ends"
	assert_eq "$(sql_primary "select pg_terminate_backend($B)")" t "$mode: backend $B ended"
	[ "$mode" = sync ] && echo go >&"$FD"
	wait_until 10 grep -q '^DIED' "$T/$mode.out" || fail "$mode: A never noticed: $(cat "$T/$mode.err")"
	note "$mode: A: $(sed -n 's/^DIED //p' "$T/$mode.out")"
	t0=$EPOCHREALTIME
	wait_until 3.5 grep -q '^RESULT' "$T/$mode.out" ||
		fail "$mode: B's select 1 neither ran nor failed within 3.5 s (wait_timeout 2 s): stat $(jqp "$POL" '.cap | tostring')"
	R=$(sed -n 's/^RESULT //p' "$T/$mode.out")
	note "$mode: B: $R"
	if [ "$(jq .ok <<<"$R")" = true ]; then
		assert_eq "$(jq -c .rows <<<"$R")" "[[1]]" "$mode: B's rows"
	else
		assert_eq "$(jq -r .pgcode <<<"$R")" 53300 "$mode: B failed, with 53300"
		assert_le "$(jq .elapsed <<<"$R")" 3.0 "$mode: B's wait (s)"
	fi
	idle() { [ "$(jqp "$POL" .cap.active)" = 0 ]; }
	wait_until 2 idle || fail "$mode: stat: A (dead) still holds a slot: $(jqp "$POL" '.connections | tostring')"
	exec {FD}>&-
	wait $P || fail "$mode: client exit status: $(cat "$T/$mode.err")"
done
