#!/usr/bin/env bash
# t_ro_reload.sh: the read-only rules reloaded while a program runs (the
# threaded psycopg2 service tests/clients/py_readonly.py, reading and
# writing all the time, one of its connections idle), no flag file:
#  - `[read_only] enabled = yes` written into the policy switches its reads
#    to the replica within about a second; `pqshim drain`, started at the
#    switch, returns 0 only once the primary's pg_stat_activity shows none
#    of the service's connections;
#  - the policy overwritten with garbage is refused: the service keeps
#    running, read-only, without a failed read; stat's policy.error names
#    file:line, the same that `pqshim check` prints;
#  - a world-writable policy (mode 0666, saying enabled = no) is refused
#    likewise (the error says writable) and read-only stays; once fixed
#    (chmod 600) it loads and the reads come back to the primary;
#  - with in_transaction = keep, a psql session inside a transaction when
#    read-only comes back is a holdout: `pqshim drain --timeout 2s` exits 1
#    and lists it; after its COMMIT and next statement, drain exits 0 and
#    the primary shows none of the session's or the service's connections.
# Every policy is written to a temporary file and renamed into place, as
# editors and config managers do, so the shim never reads half a file.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=client.sh
. "$(dirname "$0")/client.sh"

client_ro_table

APP=t_ro_reload TXAPP=t_ro_reload_tx
# rules ENABLED: the policy's text with [read_only] enabled = ENABLED
rules() {
	printf '[read_only]\nenabled = %s\nprimary = port=%s\nreplica = port=%s\ndrain_timeout = 5s\nin_transaction = keep\n' \
		"$1" "$PQT_PRIMARY_PORT" "$PQT_REPLICA_PORT"
}
POL=$(policy_new reload "$(rules no)
[shim]
log = $T/shim.log
")
SEG=$(sed -n 's/^segment = //p' "$POL")
[ -n "$SEG" ] || fail "no segment in $POL"
# put MODE TEXT: the policy file, replaced atomically, with that mode
put() {
	local tmp=$T/.policy.tmp
	printf '[shim]\nsegment = %s\nlog = %s\n%s' "$SEG" "$T/shim.log" "$2" >"$tmp"
	chmod "$1" "$tmp"
	mv -f "$tmp" "$POL"
}
# The shim's own view, through the segment: -p would name the segment after
# the policy file, which is not readable while it is garbage.
segstat() { "$PQSHIM" stat -s "$SEG" --json; }
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }
# stays_read_only WHAT WHY: for well over a reload period the service lives
# and goes on reading, all on the replica, with no error
stays_read_only() {
	local rp rr
	rp=$(field read_primary) rr=$(field read_replica)
	sleep 1.5
	alive
	wait_until 3 more read_replica "$((rr + 20))" || fail "reads stalled $1: $(state)"
	assert_eq "$(field read_primary)" "$rp" "$2"
	no_errors "$1"
}

client_start py_readonly.py "$PY" "$PQT_ROOT/tests/clients/py_readonly.py" --app "$APP"
SVC=$RUN

last() { tail -n 1 "$T/out"; }
field() { last | jq -r ".$1"; }
more() { [ "$(field "$1")" -gt "$2" ]; }
alive() { kill -0 "$SVC" 2>/dev/null || fail "the service died: $(tail -5 "$T/err")"; }
no_errors() {
	assert_eq "$(field read_errors)" 0 "$1: no failed read ($(field last_error))"
	assert_eq "$(field other_errors)" 0 "$1: no other error ($(field last_error))"
}
on_primary() { server_backends "$1"; }
on_replica() { server_backends "$1" replica; }
state() {
	echo "last report: $(last); primary: $(sql_primary "select pid, application_name, state, query
		from pg_stat_activity where application_name like 't_ro_reload%'" | tr '\n' ';'); stat: $(segstat |
		jq -c '{policy, connections: [.connections[] | {pid, tid, target, state, status, backend_pid}]}')"
}

wait_until 5 more read_primary 20 || fail "no reads on the primary: $(state)"
assert_eq "$(on_primary "$APP")" 5 "the service's 5 connections on the primary"
gen0=$(segstat | jq .policy.generation)

# --- enabled = yes written into the policy: the switch, and drain ---------
r0=$(field read_replica)
put 600 "$(rules yes)"
t0=${EPOCHREALTIME/./}
(
	rc=0
	"$PQSHIM" drain -p "$POL" --timeout 10s >"$T/d1.out" 2>"$T/d1.err" || rc=$?
	# what the server shows the moment drain returns
	on_primary "$APP" >"$T/d1.primary"
	echo "$rc" >"$T/d1.rc"
) &
DRAIN=$!
bg_track "$DRAIN"
wait_until 5 more read_replica "$r0" || fail "reads never reached the replica: $(state)"
took=$(ms_since "$t0")
note "first read from the replica ${took} ms after enabled = yes was written"
assert_le "$took" 2000 "the switch within a second (plus a report period)"
drained() { [ -e "$T/d1.rc" ]; }
wait_until 15 drained || fail "drain did not return"
note "drain: exit $(cat "$T/d1.rc") after $(ms_since "$t0") ms; $(cat "$T/d1.out" "$T/d1.err")"
left=$(cat "$T/d1.primary")
if [ "$left" != 0 ]; then
	# a backend told to go may take a moment to leave pg_stat_activity
	note "drain returned with $left of the service's backends still listed on the primary"
	gone_primary() { [ "$(on_primary "$APP")" = 0 ]; }
	wait_until 0.5 gone_primary ||
		fail "drain returned (exit $(cat "$T/d1.rc")) but the primary still shows the service's connections: $(state)"
fi
# (checked in a subshell: a failure marks the test failed, and the rest,
# which does not depend on it, still runs and reports)
(
	assert_eq "$(cat "$T/d1.rc")" 0 "drain after enabled = yes, the primary showing none of the service's connections (output: $(cat "$T/d1.out" "$T/d1.err"); $(state))"
	assert_match "$(cat "$T/d1.out")" 'no connection left on the primary' "drain's message"
) || :
assert_eq "$(on_primary "$APP")" 0 "the primary shows none of the service's connections"
assert_eq "$(segstat | jq .policy.read_only)" true "stat: read_only"
no_errors "after the switch"

# --- garbage: refused, the previous policy stays ---------------------------------
gen1=$(segstat | jq .policy.generation)
assert_ge "$gen1" "$((gen0 + 1))" "stat: the generation went up with the reload"
put 600 "$(rules yes)
this is not a policy
"
# the shim's own word: it publishes the error with a new generation (stat
# would also show an error of its own reading of the file)
err_set() { segstat | jq -e ".policy.error != null and .policy.generation > $gen1" >/dev/null; }
wait_until 3 err_set || fail "the garbage policy was not noticed: $(state)"
perr=$(segstat | jq -r .policy.error)
line=$(grep -n 'this is not a policy' "$POL" | cut -d: -f1)
assert_match "$perr" "^$POL:$line: missing \"=\"" "stat: policy.error names file:line"
rc=0
"$PQSHIM" check "$POL" >"$T/check.out" 2>"$T/check.err" || rc=$?
assert_eq "$rc" 1 "pqshim check on the garbage"
assert_eq "$(head -n 1 "$T/check.err")" "$perr" "pqshim check prints the error stat shows"
# (stat reads the file too: the shim's own word is its log)
kept() { grep -q "$POL:$line: .*; keeping the previous policy" "$T/shim.log"; }
wait_until 3 kept || fail "the shim's log does not say it kept the policy: $(cat "$T/shim.log")"
# Still read-only, still reading, for well over a reload period.
stays_read_only "with the garbage policy" "no read on the primary while the garbage is refused"
S=$(segstat)
assert_eq "$(jq '.connections | length' <<<"$S")" 5 "stat: the service's connections"
# What stat says while the previous policy stays in force (subshells: the
# rest still runs if these fail).
(
	assert_eq "$(jq .policy.read_only <<<"$S")" true \
		"stat: policy.read_only while read-only stays in force, the garbage refused ($(jq -c .policy <<<"$S"))"
) || :
# `pqshim stat -p POL` is what a user types: it must still find the service.
(
	SP=$("$PQSHIM" stat -p "$POL" --json 2>&1) || fail "stat -p POL with the garbage policy: $SP"
	seg=$(jq -r .segment.name <<<"$SP")
	# a segment of its own, named after the file, that nothing else uses
	[ "$seg" = "$SEG" ] || echo "$seg" >>"$T/.segments"
	assert_eq "$(jq '.connections | length' <<<"$SP")" 5 \
		"stat -p POL with the garbage policy shows the service ($(jq -c '{segment, policy}' <<<"$SP"))"
) || :

# --- world-writable: refused likewise; fixed, it loads --------------------------
gen2=$(segstat | jq .policy.generation)
put 666 "$(rules no)"
writable() { segstat | jq -e "(.policy.error // \"\" | test(\"writable\")) and .policy.generation > $gen2" >/dev/null; }
wait_until 3 writable || fail "the world-writable policy was not refused: $(state)"
perr=$(segstat | jq -r .policy.error)
assert_match "$perr" "^$POL: refused: group- or world-writable" "stat: policy.error says writable"
rc=0
"$PQSHIM" check "$POL" >"$T/check.out" 2>"$T/check.err" || rc=$?
assert_eq "$rc" 1 "pqshim check on the world-writable policy"
assert_eq "$(head -n 1 "$T/check.err")" "$perr" "pqshim check prints the error stat shows"
stays_read_only "with the writable policy" "enabled = no in a writable file is not obeyed: still read-only"

chmod 600 "$POL"
t0=${EPOCHREALTIME/./}
p0=$(field read_primary)
wait_until 5 more read_primary "$p0" || fail "reads never came back after chmod 600: $(state)"
note "reads back on the primary $(ms_since "$t0") ms after chmod 600"
assert_le "$(ms_since "$t0")" 2000 "the fixed policy loads within a second (plus a report period)"
no_error() { [ "$(segstat | jq -r .policy.error)" = null ]; }
wait_until 3 no_error || fail "policy.error not cleared: $(state)"
assert_eq "$(segstat | jq .policy.read_only)" false "stat: read-write again"
none_on_replica() { [ "$(on_replica "$APP")" = 0 ]; }
wait_until 8 none_on_replica || fail "connections left on the replica: $(state)"
assert_eq "$("$PQSHIM" check "$POL" 2>&1)" "$POL: ok" "pqshim check on the fixed policy"
no_errors "after the fix"

# --- a holdout in a transaction (in_transaction = keep) ---------------------------
PGAPPNAME=$TXAPP psql_hold tx "$POL"
send() { psql_feed tx "$@"; }
send "begin;" "select pg_is_in_recovery();"
PSQLPID=$RUN # pqshim run execs psql
assert_eq "$(cat "$T/tx.out")" f "the transaction on the primary"

r0=$(field read_replica)
put 600 "$(rules yes)"
wait_until 5 more read_replica "$r0" || fail "reads never reached the replica: $(state)"
svc_gone() { [ "$(on_primary "$APP")" = 0 ]; }
wait_until 8 svc_gone || fail "the service's connections left on the primary: $(state)"
assert_eq "$(on_primary "$TXAPP")" 1 "the transaction still on the primary"
rc=0
"$PQSHIM" drain -p "$POL" --timeout 2s >"$T/d2.out" 2>"$T/d2.err" || rc=$?
assert_eq "$rc" 1 "drain with a transaction kept on the primary (output: $(cat "$T/d2.out" "$T/d2.err"))"
grep -Eq "^$PSQLPID +psql +$PSQLPID +in_transaction +primary " "$T/d2.out" ||
	fail "the holdout is not listed: $(cat "$T/d2.out")"
(
	assert_match "$(cat "$T/d2.err")" 'timed out after .*: 1 connection still on the primary' \
		"drain's message, the primary showing only the session ($(cat "$T/d2.out"); $(state))"
	assert_eq "$(grep -vc '^PID ' "$T/d2.out")" 1 "one holdout listed: $(cat "$T/d2.out")"
) || :

send "commit;" "select pg_is_in_recovery();"
assert_eq "$(tail -n 1 "$T/tx.out")" t "after COMMIT, the session's next statement on the replica"
t0=${EPOCHREALTIME/./}
rc=0
"$PQSHIM" drain -p "$POL" --timeout 10s >"$T/d3.out" 2>"$T/d3.err" || rc=$?
left=$(on_primary "$TXAPP")
note "drain after the COMMIT: exit $rc after $(ms_since "$t0") ms"
if [ "$left" != 0 ]; then
	note "drain returned with the session's old backend still listed on the primary"
	tx_gone() { [ "$(on_primary "$TXAPP")" = 0 ]; }
	wait_until 0.5 tx_gone || fail "drain returned but the primary still shows the session: $(state)"
fi
(
	assert_eq "$rc" 0 "drain after the COMMIT, the primary showing none of the session's or the service's connections (output: $(cat "$T/d3.out" "$T/d3.err"); $(state))"
) || :
assert_eq "$(on_primary "$APP")" 0 "the primary shows none of the service's connections"
assert_eq "$(on_replica "$TXAPP")" 1 "the session on the replica"

held_end tx 0
held_end client "" 10
no_errors "at the end"
echo "ok: reloads switch, refused policies keep the last good one, drain waits for the primary to empty"
