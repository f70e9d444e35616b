#!/usr/bin/env bash
# t_robust_close_in_xact.sh - a connection closed inside a transaction keeps
# its slot until the server has ended its session.
#  - max_active = 1.  psycopg2 connection A drops 200 temp tables when its
#    session ends (it made them), opens a transaction and is closed
#    (PQfinish); connection B of the same thread, open already, then asks
#    the server at once whether A's backend is still there.  Under the cap,
#    B's statement may only run once A's session is over: the server must
#    no longer list A's backend.  PQfinish waits for that (at most 1 s).
#  - three times; nothing left held after.
#  Before the change, A's slot went back at PQfinish, before the server had
#  even read the Terminate: B ran while the server still showed A's backend
#  idle in its transaction (2 busy under max_active = 1).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ROB=$PQT_ROOT/tests/clients/py_robust.py
APP=t_robust_cix
POL=$(policy_new cix "[cap]
max_active = 1
wait_timeout = 10s
")
for i in 1 2 3; do
	"$PQSHIM" run -p "$POL" -- "$PY" "$ROB" close-in-xact --app "$APP" >"$T/out.$i" 2>"$T/err.$i" ||
		fail "client $i: $(cat "$T/err.$i")"
	R=$(sed -n 's/^RESULT //p' "$T/out.$i")
	note "$i: $R"
	assert_eq "$(jq .a_seen <<<"$R")" 0 "$i: the server's count of A's backend when B's statement ran"
	assert_le "$(jq '.close_s * 1000 | floor' <<<"$R")" 1500 "$i: ms in PQfinish"
done
assert_eq "$(jqp "$POL" '[.cap.active, (.connections | length)] | map(tostring) | join(" ")')" "0 0" \
	"nothing held or recorded after"
