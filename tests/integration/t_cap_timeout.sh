#!/usr/bin/env bash
# t_cap_timeout.sh: a wait for a slot that reaches wait_timeout fails the way
# libpq fails, and only then; a freed slot is taken at once.
#  - max_active = 1, wait_timeout = 500ms; a psql session under the shim holds
#    the only slot inside BEGIN (the server shows it 'idle in transaction').
#    A psycopg2 client's `select 1` fails after 0.5 to 1.0 s with
#    psycopg2.errors.TooManyConnections (pgcode 53300), its message
#    "pqshim: no slot free after waiting W s (max_active = 1,
#    wait_timeout = 500ms, policy PATH)", and the statement never reached the
#    server (its backend has run nothing). psql itself sends with
#    PQsendQuery, which (SPEC.md) returns 0 with the text in PQerrorMessage:
#    psql prints "pqshim: no slot free ..." and exits 1. `pqshim stat` counts both
#    timeouts. Once the holder commits, the client's next `select 1` gets the
#    slot at once (< 0.3 s) and reaches the server.
#  - max_connections = 2, wait_timeout = 500ms: with two connections open, a
#    third connect (another process) fails after 0.5 to 1.0 s with
#    psycopg2.OperationalError "pqshim: connection refused: no slot free
#    after waiting ..." and never reaches the server (still 2 backends); once
#    one is closed, the connect succeeds at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"

# --- psql holder: a session held open on a fifo -------------------------------
psql_start() { PGAPPNAME=$2 psql_hold holder "$1"; } # POLICY APP
psql_send() { psql_feed holder "$@"; }                # LINES...: run them, wait until psql has
backend() { server_activity "$@"; }                   # APP COLUMN: the one backend of APP
# timed_out WHAT PREFIX SETTINGS [MAX]: the last result ($R) failed after 0.5
# to 1.0 s with the message "PREFIX no slot free after waiting W s (SETTINGS,
# policy $POL)", W at least 0.5 (and at most MAX)
timed_out() {
	assert_ge "$(r .elapsed)" 0.5 "$1: seconds before the failure"
	assert_le "$(r .elapsed)" 1.0 "$1: seconds before the failure"
	local msg w want
	msg=$(r .msg)
	w=$(sed -n "s/^${2}no slot free after waiting \([0-9.]*\) s (.*/\1/p" <<<"$msg")
	_pqt_num "$w" || fail "$1: message: $msg"
	assert_ge "$w" 0.5 "$1: the time waited the message names"
	[ -z "${4:-}" ] || assert_le "$w" "$4" "$1: the time waited the message names"
	want="${2}no slot free after waiting $w s ($3, policy $POL)"
	[[ $msg == "$want"* ]] || fail "$1: message '$msg' does not start with '$want'"
}

# ============ max_active = 1, wait_timeout = 500ms ===========================
POL=$(policy_new timeout "[cap]
max_active = 1
wait_timeout = 500ms
")
psql_start "$POL" t_cap_timeout_holder
psql_send "begin;" "select 1;"
assert_eq "$(backend t_cap_timeout_holder state)" "idle in transaction" "server: the holder"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "1 0" "stat: active waiting (held)"
assert_eq "$(jqp "$POL" '[.connections[] | .slot] | join(" ")')" held "stat: the holder's slot"

probe_start p "$POL" t_cap_timeout_probe
pcmd p "a connect c"
assert_eq "$(r .ok)" true "probe: connect (max_active does not cap connects): $R"
pcmd p "a exec c select 1"
note "probe, select 1 while the slot is held: $R"
assert_eq "$(r .ok)" false "probe: select 1 while the slot is held fails"
assert_eq "$(r .cls)" TooManyConnections "probe: the exception's class (psycopg2.errors)"
assert_eq "$(r .pgcode)" 53300 "probe: pgcode"
timed_out probe "pqshim: " "max_active = 1, wait_timeout = 500ms" 1.0
# The statement never reached the server.
assert_eq "$(backend t_cap_timeout_probe "state || '|' || query")" "idle|" \
	"server: the probe's backend (state|last query)"
assert_eq "$(backend t_cap_timeout_holder state)" "idle in transaction" "server: the holder, still"

# psql, the real binary under the shim: PQsendQuery fails, psql prints
# PQerrorMessage (the SQLSTATE travels in results: checked with psycopg2 above)
t0=${EPOCHREALTIME/./} rc=0
(PGAPPNAME=t_cap_timeout_psql held_clean "$PQSHIM" run -p "$POL" -- "$PSQL" -X -A -t \
	-v VERBOSITY=verbose -c "select 1") >"$T/psql1.out" 2>"$T/psql1.err" || rc=$?
took=$(awk -v us=$((${EPOCHREALTIME/./} - t0)) 'BEGIN { printf "%.3f", us / 1e6 }')
note "psql -c 'select 1' while the slot is held: exit $rc after $took s: $(cat "$T/psql1.err")"
assert_eq "$rc" 1 "psql: exit status"
assert_match "$(cat "$T/psql1.err")" \
	"^pqshim: no slot free after waiting [0-9.]+ s \(max_active = 1, wait_timeout = 500ms, policy $POL\)" \
	"psql: the error it prints"
assert_eq "$(cat "$T/psql1.out")" "" "psql: output"
assert_ge "$took" 0.5 "psql: seconds before the failure"
assert_le "$took" 2.0 "psql: seconds before the failure (process start included)"

assert_eq "$(jqp "$POL" '.cap.timeouts')" 2 "stat: .cap.timeouts (probe, psql)"
assert_eq "$(jqp "$POL" '(.cap.semaphores.max_active // .cap.semaphores.active).timeouts // "missing"')" 2 \
	"stat: .cap.semaphores.max_active.timeouts"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "1 0" "stat: active waiting after the timeouts"

# The holder commits: the next statement gets the slot at once.
psql_send "commit;"
assert_eq "$(backend t_cap_timeout_holder state)" idle "server: the holder after commit"
assert_eq "$(jqp "$POL" '.cap.active')" 0 "stat: .cap.active after the commit"
pcmd p "a exec c select 1"
assert_eq "$(r .ok) $(r ".rows | tojson")" "true [[1]]" "probe: select 1 after the commit: $R"
assert_le "$(r .elapsed)" 0.3 "probe: seconds for select 1 after the commit"
assert_eq "$(backend t_cap_timeout_probe "state || '|' || query")" "idle|select 1" \
	"server: the probe's backend ran it"
assert_eq "$(jqp "$POL" '.cap.timeouts')" 2 "stat: .cap.timeouts at the end"
probe_end p
held_end holder 0

# ============ max_connections = 2, wait_timeout = 500ms ======================
POL=$(policy_new conns "[cap]
max_connections = 2
wait_timeout = 500ms
")
APP=t_cap_timeout_conn
probe_start h "$POL" "$APP"
pcmd h "a connect c1"
assert_eq "$(r .ok)" true "two open: connect c1: $R"
pcmd h "a connect c2"
assert_eq "$(r .ok)" true "two open: connect c2: $R"
assert_eq "$(server_backends "$APP")" 2 "server: backends with two open"
assert_eq "$(jqp "$POL" '"\(.cap.max_connections) \(.cap.connections)"')" "2 2" \
	"stat: max_connections connections"

probe_start q "$POL" "$APP"
pcmd q "a connect c3"
note "third connect: $R"
assert_eq "$(r .ok)" false "third connect fails"
assert_eq "$(r .cls)" OperationalError "third connect: the exception's class"
timed_out "third connect" "pqshim: connection refused: " "max_connections = 2, wait_timeout = 500ms"
assert_eq "$(server_backends "$APP")" 2 "server: backends after the refused connect"
assert_eq "$(jqp "$POL" '.cap.timeouts')" 1 "stat: .cap.timeouts (the connect)"
assert_eq "$(jqp "$POL" '(.cap.semaphores.max_connections // .cap.semaphores.connections).timeouts // "missing"')" 1 \
	"stat: .cap.semaphores.max_connections.timeouts"

pcmd h "a close c2"
assert_eq "$(r .ok)" true "close c2: $R"
pcmd q "a connect c3"
assert_eq "$(r .ok)" true "connect after a close: $R"
assert_le "$(r .elapsed)" 0.3 "connect after a close: seconds"
pcmd q "a exec c3 select 2"
assert_eq "$(r .ok) $(r ".rows | tojson")" "true [[2]]" "the new connection works: $R"
assert_eq "$(server_backends "$APP")" 2 "server: backends after close + connect"
probe_end h
probe_end q
assert_eq "$(jqp "$POL" '"\(.cap.connections) \(.cap.active) \(.cap.waiting)"')" "0 0 0" \
	"stat: connections active waiting at the end"
no_backends() { [ "$(server_backends "$APP")" = 0 ]; }
wait_until 5 no_backends || fail "server: backends of $APP left"
echo "ok: wait_timeout on max_active (psycopg2, psql) and max_connections"
