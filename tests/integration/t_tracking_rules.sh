#!/usr/bin/env bash
# t_tracking_rules.sh: the [tracking] cross_thread rule and the
# [cap] max_connections_per_thread rule, with psycopg2 (tests/clients/py_rules.py).
#  - cross_thread = deny: statements that a second thread sends on the main
#    thread's connection fail with an error starting "pqshim:", nothing of
#    theirs reaches the server, and the opener thread still works on it;
#  - cross_thread = warn: they go through, are counted in cross_thread_uses,
#    the record lists both threads, and the shim warns;
#  - max_connections_per_thread = 2: a thread's third open connection fails
#    with a "pqshim:" message and never reaches the server; after closing one
#    the thread can connect again; another thread can connect.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

M=3 # statements the second thread tries

# start NAME POLICY ARGS...: py_rules.py under the shim, held NAME; sets
# RUN PID and waits for READY.
start() {
	local name=$1 pol=$2
	shift 2
	held_start "$name" "$PQSHIM" run -p "$pol" -- "$PY" "$PQT_ROOT/tests/clients/py_rules.py" "$@"
	held_ready "$name"
	PID=$(awk '$1 == "PID" { print $2 }' "$T/$name.out")
}
# finish NAME POLICY: release, check exit 0 and that the records are gone
finish() {
	FPOL=$2
	held_end "$1" 0
	gone() { [ "$(jqp "$FPOL" "[.connections[] | select(.pid == $PID)] | length")" = 0 ]; }
	wait_until 5 gone || fail "$1: records of pid $PID still listed after exit"
}
field() { sed -n "s/^$2 //p" "$T/$1.out" | jq -r "$3"; }
rows() { sql_primary "select count(*) from py_rules_t where app = '$1' and who = '$2'"; }

# --- cross_thread = deny --------------------------------------------------
POL=$(policy_new deny "[tracking]
cross_thread = deny
")
APP=t_rules_deny
start deny "$POL" --mode xthread --app "$APP" --second "$M"
OPENER=$(field deny TIDS .opener) SECOND=$(field deny TIDS .second)
[ "$OPENER" != "$SECOND" ] || fail "deny: one thread?"
assert_eq "$(field deny RESULT '.second | length')" "$M" "deny: attempts reported"
while read -r msg; do
	assert_match "$msg" '^pqshim:' "deny: error of a statement from the second thread"
done < <(field deny RESULT '.second[]')
assert_eq "$(rows "$APP" second)" 0 "deny: rows the second thread wrote"
assert_eq "$(rows "$APP" opener)" 1 "deny: rows the opener wrote after the refusals"
assert_eq "$(server_backends "$APP")" 1 "deny: backends (the connection stays up)"
rec=".connections[] | select(.pid == $PID)"
assert_eq "$(jqp "$POL" "[$rec] | length")" 1 "deny: connection records"
assert_eq "$(jqp "$POL" "$rec | [.tid, .state, .status] | map(tostring) | join(\" \")")" \
	"$OPENER idle ok" "deny: record: opener tid, state, status"
# CREATE, DELETE, INSERT, SELECT from the opener; the refused ones were
# never sent (at most they count as statements)
assert_ge "$(jqp "$POL" "$rec | .queries")" 4 "deny: record: queries"
assert_le "$(jqp "$POL" "$rec | .queries")" $((4 + M)) "deny: record: queries"
finish deny "$POL"
assert_ge "$(jqp "$POL" .totals.refused)" 1 "deny: totals.refused"
note "deny: totals $(jqp "$POL" '.totals | tostring')"

# --- cross_thread = warn --------------------------------------------------
POL=$(policy_new warn "[tracking]
cross_thread = warn
")
APP=t_rules_warn
start warn "$POL" --mode xthread --app "$APP" --second "$M"
OPENER=$(field warn TIDS .opener) SECOND=$(field warn TIDS .second)
assert_eq "$(field warn RESULT '.second | map(select(. == "ok")) | length')" "$M" \
	"warn: the second thread's statements that went through"
assert_eq "$(rows "$APP" second)" "$M" "warn: rows the second thread wrote"
assert_eq "$(rows "$APP" opener)" 1 "warn: rows the opener wrote"
rec=".connections[] | select(.pid == $PID)"
assert_eq "$(jqp "$POL" "[$rec] | length")" 1 "warn: connection records"
assert_eq "$(jqp "$POL" "$rec | .tid")" "$OPENER" "warn: record: opener tid"
assert_eq "$(jqp "$POL" "$rec | .threads | sort | map(tostring) | join(\" \")")" \
	"$(printf '%s\n' "$OPENER" "$SECOND" | sort -n | tr '\n' ' ' | sed 's/ $//')" \
	"warn: record: threads that used it"
# statements: CREATE, DELETE, M from the second thread, INSERT, SELECT
assert_eq "$(jqp "$POL" "$rec | [.queries, .xacts, .state, .status] |
	map(tostring) | join(\" \")")" "$((M + 4)) $((M + 4)) idle ok" \
	"warn: record: queries xacts state status"
x=$(jqp "$POL" "$rec | .cross_thread_uses")
assert_ge "$x" 1 "warn: record: cross_thread_uses"
assert_le "$x" "$M" "warn: record: cross_thread_uses (at most one per statement)"
assert_match "$(cat "$T/warn.err")" 'pqshim' "warn: the shim's warning on stderr"
finish warn "$POL"
assert_eq "$(jqp "$POL" .totals.cross_thread_uses)" "$x" "warn: totals.cross_thread_uses"
assert_eq "$(jqp "$POL" .totals.refused)" 0 "warn: totals.refused"

# --- max_connections_per_thread = 2 -------------------------------------
POL=$(policy_new cap "[cap]
max_connections_per_thread = 2
")
APP=t_rules_cap
start cap "$POL" --mode cap --app "$APP"
T1=$(field cap TIDS .t1) T2=$(field cap TIDS .t2)
assert_match "$(field cap RESULT .third)" '^pqshim:' "cap: the third connect of thread 1"
assert_eq "$(field cap RESULT .after_close)" ok "cap: thread 1 connects after closing one"
assert_eq "$(field cap RESULT .other_thread)" ok "cap: thread 2 connects"
# thread 1 holds c1 and c4, thread 2 holds c5
assert_eq "$(server_backends "$APP")" 3 "cap: backends (the refused one never reached the server)"
assert_eq "$(jqp "$POL" "[.connections[] | select(.pid == $PID)] | group_by(.tid) |
	map(\"\(.[0].tid):\(length)\") | join(\" \")")" \
	"$(printf '%s\n' "$T1:2" "$T2:1" | sort -n | tr '\n' ' ' | sed 's/ $//')" \
	"cap: records per opener tid"
assert_eq "$(jqp "$POL" "[.connections[] | select(.pid == $PID) |
	select(.status != \"ok\")] | length")" 0 "cap: records not ok (the refused one listed?)"
finish cap "$POL"
# c1, c2, c4, c5 (the refused one is no connection)
assert_eq "$(jqp "$POL" '.totals | [.connects, .closes, .refused] | map(tostring) |
	join(" ")')" "4 4 1" "cap: totals: connects closes refused"
assert_eq "$(server_backends "$APP")" 0 "cap: backends left"
echo "ok: cross_thread deny/warn, max_connections_per_thread"
