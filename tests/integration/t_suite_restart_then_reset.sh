#!/usr/bin/env bash
# t_suite_restart_then_reset.sh: the server restarts (pg_ctl restart -m fast)
# under an idle connection and under a busy one (pg_sleep(60) sent with
# PQsendQuery): the busy one's results end with an error, the idle one's next
# statement fails, both say CONNECTION_BAD, and PQreset brings both back.
# The server is the test's own (suite.sh private_start), not the bed's.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/clients/suite_client.c restart). While
# the client holds its connections at the end, both are idle and ok and no
# slot is held: the busy one's slot did not stay with the dead backend.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_build
suite_policy
private_start

_ready_or_gone() { grep -qx "$1" "$T/$2.out" || ! kill -0 "$RUN" 2>/dev/null; }

# one_run NAME [PQSHIM RUN ARGS...]: the client, the restart, the go-ahead
one_run() {
	local name=$1 rc=0 busy
	shift
	mkfifo "$T/$name.in"
	SUITE_HOLD=1 "$@" "$T/suite_client" restart "$PRIV_CONNINFO" <"$T/$name.in" \
		>"$T/$name.out" 2>"$T/$name.err" &
	RUN=$!
	bg_track "$RUN"
	exec 3>"$T/$name.in"
	wait_until 30 _ready_or_gone READY "$name" || fail "$name: never READY"
	grep -qx READY "$T/$name.out" || fail "$name: $(cat "$T/$name.out" "$T/$name.err")"
	busy=$(_priv_srv /usr/lib/postgresql/15/bin/psql -XAtq -h "$T/priv/sock" -p "$PRIV_PORT" -U postgres \
		-d postgres -c "select count(*) from pg_stat_activity where state = 'active' and query like '%pg_sleep(60)%' and pid <> pg_backend_pid()")
	assert_eq "$busy" 1 "$name: the busy connection's pg_sleep runs on the server"
	private_restart
	echo go >&3
	wait_until 30 _ready_or_gone HOLD "$name" || fail "$name: never got to HOLD"
	grep -qx HOLD "$T/$name.out" || fail "$name: $(cat "$T/$name.out" "$T/$name.err")"
	[ "$name" = shim ] && suite_held "$RUN"
	echo go >&3
	exec 3>&-
	wait "$RUN" || rc=$?
	assert_eq "$rc $(tail -n 1 "$T/$name.out")" "0 OK restart" "$name (stderr: $(cat "$T/$name.err"))"
}

one_run ref env -u LD_PRELOAD -u PQSHIM_POLICY
one_run shim "$PQSHIM" run -p "$POL" --
assert_eq "$(jqp "$POL" '.totals | [.connects == .closes, .leaked] | map(tostring) | join(" ")')" \
	"true 0" "totals: every connection closed, none leaked"
assert_eq "$(jqp "$POL" '[.cap.active, .cap.waiting] | tostring')" "[0,0]" "slots after exit"
echo "ok: restart under an idle and a busy connection, PQreset: as without the shim"
