#!/usr/bin/env bash
# t_ro_cannot.sh: on_switch = migrate, and a connection that cannot be moved
# is reset with the reason, once. psycopg 3 prepared a statement (PQprepare)
# on a temporary table, which the replica cannot prepare again
# (tests/clients/py3_temp_ro.py). After the flag appears, its next statement
# fails with the pqshim: message that names the statement and the server's
# reason; the connection is then closed (the next statement fails
# as on any closed connection, not with another move attempt), and nothing
# of it is left on the primary.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
FLAG=$T/read-only.flag
APP=t_ro_cannot
POL=$(policy_new cannot "[read_only]
flag_file = $FLAG
primary = port=$PQT_PRIMARY_PORT
replica = port=$PQT_REPLICA_PORT
[shim]
log = $T/shim.log")

mkfifo "$T/in"
"$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/py3_temp_ro.py" --app "$APP" \
	<"$T/in" >"$T/out" 2>"$T/err" &
RUN=$!
bg_track "$RUN"
exec 3>"$T/in"
at_exit 'exec 3>&-'
wait_until 20 grep -q READY "$T/out" || fail "program not ready: $(cat "$T/out" "$T/err")"
assert_eq "$(server_backends "$APP")" 1 "the client on the primary"

touch "$FLAG"
noticed() { grep -q "read-only on" "$T/shim.log" 2>/dev/null; }
wait_until 5 noticed || fail "the client never noticed the flag: $(cat "$T/shim.log")"
echo go >&3
result() { grep -q '^\[' "$T/out"; }
wait_until 10 result || fail "no result: $(cat "$T/out" "$T/err")"
R=$(grep '^\[' "$T/out")
note "client: $R"
# a send refused: libpq has no result to carry a SQLSTATE, only its error
# message, whose first "word: " psycopg 3 drops (as it drops "FATAL: ")
assert_eq "$(jq -r '.[0] | "\(.ok) \(.cls)"' <<<"$R")" "false OperationalError" "first statement: fails"
assert_match "$(jq -r '.[0].msg' <<<"$R")" \
	'the connection to the primary was closed: read-only is now on \(on_switch = migrate, but this connection cannot be moved: statement "_pg3_0" could not be prepared again: relation "tmp_t" does not exist, policy [^)]*\); reconnect$' \
	"first statement: the reason"
assert_eq "$(jq -r '.[1].ok' <<<"$R")" false "second statement: the connection is closed"
! grep -Eq 'cannot be moved|could not move' <<<"$(jq -r '.[1].msg' <<<"$R")" ||
	fail "second statement: tried to move again: $R"
assert_eq "$(server_backends "$APP")" 0 "nothing left on the primary"
assert_eq "$(jqp "$POL" .totals.migrations)" 0 "totals: migrations"
echo "ok: a connection that cannot move is reset once, with the reason"
