#!/usr/bin/env bash
# t_ro_cannot.sh: on_switch = migrate, and a connection that cannot be moved
# is reset with the reason, once. Two clients:
#  - psycopg 3 prepared a statement (PQprepare) on a temporary table, which
#    the replica cannot prepare again (tests/clients/py3_temp_ro.py);
#  - psycopg2 LISTENs on a channel, which a replica refuses
#    (tests/clients/py_listen_ro.py): moved, it would silently stop hearing.
# After the flag appears, each one's next statement fails with the pqshim:
# message that names what could not be carried and the server's reason
# (08006 where libpq gives a result); the connection is then closed (the
# next statement fails as on any closed connection, not with another move
# attempt), and nothing of either is left on the primary.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

FLAG=$T/read-only.flag
APP=t_ro_cannot
POL=$(ro_policy cannot "$T/shim.log")

# start NAME SCRIPT: the client, held NAME
start() { held_start "$1" "$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/$2" --app "${APP}_$1"; }
start temp py3_temp_ro.py
start listen py_listen_ro.py
for n in temp listen; do
	held_ready "$n" READY
	assert_eq "$(server_backends "${APP}_$n")" 1 "$n: on the primary"
done

touch "$FLAG"
# both processes' own ticks have seen the flag (each logs it)
wait_until 5 ro_noticed "$T/shim.log" on 2 || fail "the clients never both noticed the flag: $(cat "$T/shim.log")"
held_send temp go
held_send listen go
result() { grep -q '^\[' "$T/$1.out"; }
for n in temp listen; do
	wait_until 10 result "$n" || fail "$n: no result: $(cat "$T/$n.out" "$T/$n.err")"
	note "$n: $(grep '^\[' "$T/$n.out")"
done
r() { jq -r "$2" <<<"$(grep '^\[' "$T/$1.out")"; }

# a send refused: libpq has no result to carry a SQLSTATE, only its error
# message, whose first "word: " psycopg 3 drops (as it drops "FATAL: ")
assert_eq "$(r temp '.[0] | "\(.ok) \(.cls)"')" "false OperationalError" "temp: first statement fails"
assert_match "$(r temp '.[0].msg')" \
	'the connection to the primary was closed: read-only is now on \(on_switch = migrate, but this connection cannot be moved: statement "_pg3_0" could not be prepared again: relation "tmp_t" does not exist, policy [^)]*\); reconnect$' \
	"temp: the reason"
# PQexec refused: a result with 08006
assert_eq "$(r listen '.[0] | "\(.ok) \(.pgcode)"')" "false 08006" "listen: first statement fails, SQLSTATE"
assert_match "$(r listen '.[0].msg')" \
	'^pqshim: the connection to the primary was closed: read-only is now on \(on_switch = migrate, but this connection cannot be moved: it listens on channel "jobs", and the new server refuses to: cannot execute LISTEN during recovery, policy [^)]*\); reconnect$' \
	"listen: the reason"
for n in temp listen; do
	assert_eq "$(r $n '.[1].ok')" false "$n: second statement: the connection is closed"
	! grep -Eq 'cannot be moved|could not move' <<<"$(r $n '.[1].msg')" ||
		fail "$n: second statement: tried to move again: $(r $n '.[1]')"
	assert_eq "$(server_backends "${APP}_$n")" 0 "$n: nothing left on the primary"
done
assert_eq "$(jqp "$POL" .totals.migrations)" 0 "totals: migrations"
echo "ok: connections that cannot move (a prepared statement, a LISTEN) are reset once, with the reason"
