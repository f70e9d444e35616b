#!/usr/bin/env bash
# t_tool_drain.sh: `pqshim drain`. Its arguments (--timeout durations as the
# policy writes them, usage errors); exit 0 at once when nothing is on a
# forbidden target, with a real psql session held open (target "direct");
# and, with hand-made connection records, the timeout path (exit 1, each
# holdout listed), a holdout that leaves while drain waits (exit 0: it
# closes, or it is killed with -9 and reaped), the policy re-read while drain
# waits (the flag file appears), `[read_only] enabled = yes`, the policy's
# drain_timeout as the default and -s SEGMENT.
#
# Why hand-made records: until redirection is enforced the shim records
# every connection with target "direct", never "primary" or "replica", so
# a small C program built here from shim/segment.c puts a process record and
# one connection record with the target we need into the policy's segment,
# as the shim would, holds them, and releases them when told to (or dies).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

FLAG=$T/read-only.flag
# `primary` names a port nobody uses, so the psql session below matches no
# rule (target "direct") whatever the shim learns to enforce later.
RO="[read_only]
flag_file = $FLAG
primary = host=$PQT_SOCKDIR port=1
replica = host=$PQT_SOCKDIR port=$PQT_REPLICA_PORT
drain_timeout = 3s
"
POL=$(policy_new drain "$RO")
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$POL" /usr/lib/postgresql/15/bin/pg_isready -q # the shim makes the segment: the tool never does
SEG=$(sed -n 's/^segment = //p' "$POL")

# --- arguments
"$PQSHIM" drain --help | grep -q '^usage: pqshim drain' || fail "drain --help"
"$PQSHIM" drain -h | grep -q '^usage: pqshim drain' || fail "drain -h"
"$PQSHIM" --help | grep -q '^  drain ' || fail "pqshim --help lists drain"
for bad in "--timeout 5" "--timeout 5x" "--timeout -1s" "--timeout 8d" "--timeout=" "--timeout" "--bogus"; do
	rc=0
	# shellcheck disable=SC2086 # split on purpose
	"$PQSHIM" drain -p "$POL" $bad >/dev/null 2>"$T/bad.err" || rc=$?
	assert_eq "$rc" 2 "drain $bad: usage error"
done
assert_match "$(cat "$T/bad.err")" 'unknown option --bogus' "drain --bogus says why"
err=$("$PQSHIM" drain -p "$POL" --timeout 5x 2>&1 >/dev/null || true)
assert_match "$err" 'bad --timeout "5x": expected a duration like 250ms' "drain --timeout 5x says why"
for good in 250ms 2s "5 s" 1m 1h 0; do
	out=$("$PQSHIM" drain -p "$POL" --timeout "$good") || fail "drain --timeout '$good' failed"
	assert_match "$out" '^pqshim drain: no connection left on the replica' "drain --timeout '$good'"
done
"$PQSHIM" drain -p "$POL" --timeout=2s >/dev/null || fail "drain --timeout=2s"
# A policy that does not load: there is no telling what is forbidden.
BAD=$T/bad.ini
printf '[read_only]\nenabled = perhaps\n' >"$BAD"
chmod 600 "$BAD"
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$BAD" /usr/lib/postgresql/15/bin/pg_isready -q # the shim makes the segment: the tool never does
BADSEG=$("$PQSHIM" stat -p "$BAD" --json | jq -r .segment.name)
assert_match "$BADSEG" '^p-bad-[0-9a-f]{8}$' "the segment name derived from bad.ini"
at_exit "rm -f /dev/shm/pqshim.$(id -u).$BADSEG"
rc=0
"$PQSHIM" drain -p "$BAD" --timeout 1s >/dev/null 2>"$T/bad.err" || rc=$?
assert_eq "$rc" 2 "drain with a policy that does not load"
assert_match "$(cat "$T/bad.err")" 'bad.ini:2: ' "drain names the policy's error"

# --- a real session: target "direct" is never forbidden
PGAPPNAME=t_tool_drain psql_hold psql "$POL"
PSQLPID=$RUN
held_send psql 'select 1;'
session() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $PSQLPID)] | length")" = 1 ]; }
wait_until 10 session || fail "the psql session never showed ($(cat "$T/psql.err"))"
assert_eq "$(jqp "$POL" ".connections[] | select(.pid == $PSQLPID) | .target")" direct "psql's target"
assert_eq "$(server_backends t_tool_drain)" 1 "psql's backend on the primary"

# ms_since START_US: milliseconds since ${EPOCHREALTIME/./} was START_US
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

t0=${EPOCHREALTIME/./}
out=$("$PQSHIM" drain -p "$POL" --timeout 5s) || fail "drain, read-write, psql direct"
assert_le "$(ms_since "$t0")" 1000 "drain returns at once when nothing is forbidden"
assert_match "$out" 'no connection left on the replica' "read-write: the replica is forbidden"
assert_eq "$(jqp "$POL" .policy.read_only)" false "stat: read_only without the flag file"
touch "$FLAG"
assert_eq "$(jqp "$POL" .policy.read_only)" true "stat: read_only once the flag file exists"
out=$("$PQSHIM" drain -p "$POL" --timeout 5s) || fail "drain, read-only, psql direct"
assert_match "$out" 'no connection left on the primary' "read-only: the primary is forbidden"
rm -f "$FLAG"

# --- hand-made records
cat >"$T/holdout.c" <<'EOF'
/* holdout SEGMENT TARGET SECONDS: record this process and one connection
 * with TARGET (direct|primary|replica) in SEGMENT as the shim would, say
 * READY, hold them SECONDS (0: until SIGTERM), release them, exit. */
#include "segment.h"
#include "procid.h"
#include "clock.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	struct segment seg;
	struct seg_want want = { argv[1], NULL, 0, 0, 1 };
	char why[SEG_ERROR_MAX];
	if (argc != 4 || seg_attach(&seg, &want, why, sizeof why) != SEG_OK)
		return 2;
	uint32_t target = !strcmp(argv[2], "primary") ? TGT_PRIMARY
	                : !strcmp(argv[2], "replica") ? TGT_REPLICA : TGT_DIRECT;
	int p = seg_proc_claim(&seg);
	if (p < 0)
		return 3;
	struct seg_proc *pr = &seg.procs[p];
	pr->pid = getpid();
	pr->ppid = getppid();
	pr->starttime = procid_starttime(getpid());
	pr->threads = 1;
	pr->connections = 1;
	pr->started_ns = clock_ns(CLOCK_REALTIME);
	snprintf(pr->program, sizeof pr->program, "holdout");
	__atomic_store_n(&pr->state, SLOT_LIVE, __ATOMIC_RELEASE);
	int c = seg_conn_claim(&seg, (uint32_t)p);
	if (c < 0)
		return 3;
	struct seg_conn *cr = &seg.conns[c];
	cr->tid = cr->last_tid = getpid();
	cr->cstate = CS_IDLE;
	cr->status = CST_OK;
	cr->target = target;
	cr->nthreads = 1;
	cr->threads[0] = getpid();
	cr->backend_pid = 4242;
	cr->opened_ns = clock_ns(CLOCK_REALTIME);
	cr->last_used = clock_ticks();
	snprintf(cr->server, sizeof cr->server, "host=/holdout port=%s dbname=pqt user=holdout", argv[2]);
	__atomic_store_n(&cr->state, SLOT_LIVE, __ATOMIC_RELEASE);
	signal(SIGTERM, on_term);
	printf("READY\n");
	fflush(stdout);
	for (long ms = 0, end = atol(argv[3]) * 1000; !stop && (end == 0 || ms < end); ms += 50)
		usleep(50000);
	seg_conn_release(&seg, c, 0);
	seg_proc_release(&seg, p);
	return 0;
}
EOF
# the cap's modules (shim/cap*.c: the cap, its lock, lanes, revoked grants)
cc -std=gnu11 -D_GNU_SOURCE -Wall -I"$PQT_ROOT/shim" -I"$PQT_ROOT/policy" -o "$T/holdout" \
	"$T/holdout.c" "$PQT_ROOT/shim/segment.c" "$PQT_ROOT/shim/procid.c" "$PQT_ROOT"/shim/cap*.c -lpthread ||
	fail "cannot build the holdout helper"

# holdout NAME TARGET SECONDS [SEGMENT]: start one; its pid in $HOLD
holdout() {
	"$T/holdout" "${4:-$SEG}" "$2" "$3" >"$T/$1.out" 2>&1 &
	HOLD=$!
	bg_track "$HOLD"
	wait_until 5 grep -q READY "$T/$1.out" || fail "holdout $1 not ready: $(cat "$T/$1.out")"
}

# drain_waits NAME WHY: `pqshim drain --timeout 10s` in the background
# (output $T/NAME.out, exit status $T/NAME.rc, pid DRAIN), still waiting
# 0.5 s later (else fail: it returned WHY)
drain_waits() {
	(
		rc=0
		"$PQSHIM" drain -p "$POL" --timeout 10s >"$T/$1.out" 2>&1 || rc=$?
		echo "$rc" >"$T/$1.rc"
	) &
	DRAIN=$!
	bg_track "$DRAIN"
	sleep 0.5
	[ ! -e "$T/$1.rc" ] || fail "drain returned $2: $(cat "$T/$1.out")"
}

# Read-only, one connection left on the primary: exit 1 after the timeout,
# the holdout listed with its pid, program, tid, state, target and server.
touch "$FLAG"
holdout stay primary 0
STAY=$HOLD
assert_eq "$(jqp "$POL" ".connections[] | select(.pid == $STAY) | .target")" primary "stat shows the holdout"
t0=${EPOCHREALTIME/./}
rc=0
"$PQSHIM" drain -p "$POL" --timeout 700ms >"$T/d1.out" 2>"$T/d1.err" || rc=$?
took=$(ms_since "$t0")
assert_eq "$rc" 1 "drain times out with a connection on the primary"
assert_ge "$took" 650 "drain waited for its timeout"
assert_le "$took" 3000 "drain gave up soon after its timeout"
assert_match "$(cat "$T/d1.err")" 'timed out after .*: 1 connection still on the primary' "timeout message"
line=$(grep -E "^$STAY " "$T/d1.out" || true)
assert_match "$line" "^$STAY +holdout +$STAY +idle +primary +[0-9:]{8} +[0-9.]+(ms|s) ago +host=/holdout port=primary dbname=pqt user=holdout$" \
	"the holdout's line"
[ "$(grep -c . "$T/d1.out")" = 2 ] || fail "one header and one holdout expected: $(cat "$T/d1.out")"
# -s SEGMENT finds the policy through the segment (the psql's shim published it).
rc=0
"$PQSHIM" drain -s "$SEG" --timeout 200ms >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 1 "drain -s SEGMENT uses the policy the segment names"
# With no --timeout, the policy's drain_timeout (3s).
t0=${EPOCHREALTIME/./}
rc=0
"$PQSHIM" drain -p "$POL" >/dev/null 2>&1 || rc=$?
took=$(ms_since "$t0")
assert_eq "$rc" 1 "drain with the policy's drain_timeout"
assert_ge "$took" 2900 "drain_timeout = 3s: waited"
assert_le "$took" 6000 "drain_timeout = 3s: gave up"

# The holdout closes while drain waits: exit 0, soon after.
kill -TERM "$STAY"
wait "$STAY" || true
gone() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $1)] | length")" = 0 ]; }
holdout leave primary 1
t0=${EPOCHREALTIME/./}
out=$("$PQSHIM" drain -p "$POL" --timeout 10s 2>"$T/d2.err") || fail "drain while the holdout closes: $(cat "$T/d2.err")"
took=$(ms_since "$t0")
assert_match "$out" 'no connection left on the primary' "drained message"
assert_match "$(cat "$T/d2.err")" 'waiting for 1 connection on the primary' "drain says what it waits for"
assert_ge "$took" 500 "drain waited for the holdout"
assert_le "$took" 4000 "drain noticed within a poll or so"
wait "$HOLD" || true

# The holdout is killed with -9: the next poll reaps it.
holdout kill primary 0
KILL=$HOLD
drain_waits d3 "while a holdout was alive"
kill -9 "$KILL"
wait "$KILL" 2>/dev/null || true
wait "$DRAIN"
assert_eq "$(cat "$T/d3.rc")" 0 "drain after the holdout was killed (output: $(cat "$T/d3.out"))"
gone "$KILL" || fail "the killed holdout is still listed"

# Read-write: a connection on the replica is the holdout; the flag file
# appears while drain waits, and the policy, read again, frees it.
rm -f "$FLAG"
holdout rep replica 0
REP=$HOLD
rc=0
"$PQSHIM" drain -p "$POL" --timeout 300ms >"$T/d4.out" 2>&1 || rc=$?
assert_eq "$rc" 1 "read-write: a connection on the replica holds drain"
grep -Eq "^$REP +holdout .* replica " "$T/d4.out" || fail "replica holdout not listed: $(cat "$T/d4.out")"
drain_waits d5 "with a replica holdout, read-write"
touch "$FLAG"
wait "$DRAIN"
assert_eq "$(cat "$T/d5.rc")" 0 "drain once read-only is on (output: $(cat "$T/d5.out"))"
assert_match "$(cat "$T/d5.out")" 'no connection left on the primary' "the forbidden target changed"
kill -TERM "$REP"
wait "$REP" || true
rm -f "$FLAG"

# [read_only] enabled = yes forbids the primary without any flag file.
POL2=$(policy_new drain_enabled "[read_only]
enabled = yes
primary = host=$PQT_SOCKDIR port=1
replica = host=$PQT_SOCKDIR port=$PQT_REPLICA_PORT
")
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$POL2" /usr/lib/postgresql/15/bin/pg_isready -q # the shim makes the segment: the tool never does
SEG2=$(sed -n 's/^segment = //p' "$POL2")
assert_eq "$(jqp "$POL2" .policy.read_only)" true "stat: read_only with enabled = yes"
holdout en primary 0 "$SEG2"
rc=0
"$PQSHIM" drain -p "$POL2" --timeout 200ms >"$T/d6.out" 2>&1 || rc=$?
assert_eq "$rc" 1 "enabled = yes: the primary is forbidden"
kill -TERM "$HOLD"
wait "$HOLD" || true
"$PQSHIM" drain -p "$POL2" --timeout 1s >/dev/null || fail "enabled = yes, nothing left"

# The session is untouched by all this.
held_send psql 'select 2;'
held_end psql 0
assert_eq "$(cat "$T/psql.out")" $'1\n2' "psql's output"
