#!/usr/bin/env bash
# t_cap_eventloop.sh - a single thread driving several connections (an
# event loop: pgbench -j 1 -c 4) is capped exactly, without deadlock: a send
# that would have to wait while the thread has work in flight is deferred
# (PQsend* returns 1, PQisBusy says busy) and leaves when a slot comes back.
#  - pg_sleep(0.01) script, max_active = 2, pgbench -c 4 -j 1: the server
#    never sees more than 2 of its backends busy together (strict sampler,
#    see py_cap_load.py), does see 2, and the throughput is at least 85% of
#    the ideal 2 / 10 ms.
#  - the TPC-B script (row locks), max_active = 1, -c 4 -j 1: every
#    transaction completes, no client aborts, no wait times out.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
echo 'select pg_sleep(0.01);' >"$T/sleep.sql"
POL=$(policy_new loop "[cap]
max_active = 2
wait_timeout = 10s")

sampler_start t_cap_loop

PGAPPNAME=t_cap_loop "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 4 -j 1 -T 4 -f "$T/sleep.sql" \
	>"$T/pgb1.out" 2>&1 || fail "pgbench failed: $(tail -5 "$T/pgb1.out")"
sampler_stop
note "server view: $S"
assert_le "$(jq .peak_strict <<<"$S")" 2 "busy backends seen together by the server"
assert_eq "$(jq .peak_raw <<<"$S")" 2 "the cap used to the full"
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/pgb1.out")
note "tps $tps under max_active = 2 (ideal 200)"
assert_ge "$tps" 170 "throughput against the ideal 2 / 10 ms"
assert_eq "$(grep -c aborted "$T/pgb1.out" || true)" 0 "no client aborted"

POL2=$(policy_new tpcb "[cap]
max_active = 1
wait_timeout = 10s")
"$PGBENCH" -i -q -s 1 >/dev/null 2>&1
"$PQSHIM" run -p "$POL2" -- "$PGBENCH" -n -c 4 -j 1 -T 3 >"$T/pgb2.out" 2>&1 ||
	fail "TPC-B under max_active = 1 failed: $(tail -5 "$T/pgb2.out")"
grep -q 'number of failed transactions: 0' "$T/pgb2.out" || grep -q 'tps = ' "$T/pgb2.out" ||
	fail "no result: $(cat "$T/pgb2.out")"
assert_eq "$(jqp "$POL2" .cap.timeouts)" 0 "no wait timed out"
assert_ge "$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/pgb2.out")" 100 "transactions done"
