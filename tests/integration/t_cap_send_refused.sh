#!/usr/bin/env bash
# t_cap_send_refused.sh: a send that libpq itself refuses keeps no slot.
#  - max_active = 1, wait_timeout = 5s.  Client A (Python, libpq through
#    ctypes, under the shim) connects and calls PQsendPrepare with a NULL
#    statement name: libpq refuses it (returns 0, "statement name is a null
#    pointer") after the shim took the active slot for it.  The slot must
#    come back at once: `pqshim stat` shows no active slot and A's
#    connection holding none, while A's connection stays open and idle (the
#    server shows its backend 'idle', having run nothing).
#  - then B (psql under the shim, same policy) runs `select 1`: it gets the
#    slot at once (well under wait_timeout) and the server runs it.
#  - the same for PQsendQuery with a NULL query (the other sends' path).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"

POL=$(policy_new refused "[cap]
max_active = 1
wait_timeout = 5s
")

cat >"$T/a.py" <<'PYEOF'
import ctypes, os, sys, time
call, app, ready, done = sys.argv[1:5]
pq = ctypes.CDLL("libpq.so.5")
pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQconnectdb.argtypes = [ctypes.c_char_p]
pq.PQstatus.argtypes = [ctypes.c_void_p]
pq.PQerrorMessage.restype = ctypes.c_char_p
pq.PQerrorMessage.argtypes = [ctypes.c_void_p]
pq.PQsendPrepare.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                             ctypes.c_void_p]
pq.PQsendQuery.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]
conn = pq.PQconnectdb(("application_name=" + app).encode())
if pq.PQstatus(conn) != 0:
    print("connect failed:", pq.PQerrorMessage(conn).decode(), file=sys.stderr)
    sys.exit(2)
if call == "prepare":
    r = pq.PQsendPrepare(conn, None, b"select 1", 0, None)
else:
    r = pq.PQsendQuery(conn, None)
with open(ready, "w") as f:
    f.write("%d %s\n" % (r, pq.PQerrorMessage(conn).decode().strip()))
end = time.time() + 60
while not os.path.exists(done) and time.time() < end:
    time.sleep(0.05)
pq.PQfinish(conn)
PYEOF

# one CALL: A refuses a send through CALL, B must get the slot at once
one() {
	local call=$1 app=t_cap_send_refused_$1 out start el
	rm -f "$T/ready" "$T/done"
	"$PQSHIM" run -p "$POL" -- "$PY" "$T/a.py" "$call" "$app" "$T/ready" "$T/done" \
		2>"$T/a.err" &
	local a=$!
	bg_track "$a"
	wait_until 20 test -s "$T/ready" || fail "$call: client A did not get there: $(cat "$T/a.err")"
	read -r r rest <"$T/ready"
	assert_eq "$r" 0 "$call: libpq refuses the send (A: $rest)"
	assert_match "$rest" 'null pointer' "$call: libpq's own reason"
	assert_eq "$(sql_primary "select state from pg_stat_activity where application_name = '$app'")" \
		idle "$call: server: A's backend, open and idle"
	assert_eq "$(jqp "$POL" '.cap.active')" 0 "$call: stat: no active slot once libpq refused"
	assert_eq "$(jqp "$POL" "[.connections[] | select(.application_name == \"$app\") | .slot] | join(\" \")")" \
		none "$call: stat: A's connection holds no slot"
	start=${EPOCHREALTIME/./}
	out=$(PGAPPNAME=${app}_b "$PQSHIM" run -p "$POL" -- "$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 \
		-c "select 'b ran ' || count(*) from pg_stat_activity where application_name = '$app'" 2>&1) ||
		fail "$call: B's select failed: $out"
	el=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
	assert_eq "$out" "b ran 1" "$call: B's statement ran on the server (A still connected)"
	assert_le "$el" 2000 "$call: ms before B's statement ran (wait_timeout is 5 s)"
	touch "$T/done"
	wait "$a" || fail "$call: client A exited $?: $(cat "$T/a.err")"
}

one prepare
one query
echo "ok"
