#!/usr/bin/env bash
# t_policy_inplace.sh: a policy rewritten IN PLACE while programs run never
# takes effect half-written (issue 17 point 3c). Six pgbench clients (one
# process, -c 6 -j 6) run BEGIN; log clock_timestamp(); pg_sleep(0.02); log
# clock_timestamp(); COMMIT under max_active = 2, while the policy is
# rewritten in place three times, each time still saying max_active = 2:
#  - `cat >` with a pause of 0.8 s between the truncation and the write: the
#    empty file (read: it stays unchanged long enough) is refused as "empty
#    policy", the cap stays 2;
#  - a slow writer, `(printf '[shim]...[cap]\n'; sleep 0.3; printf
#    'max_active = 2...') > policy`: its first half, a valid policy with no
#    cap, must never be taken;
#  - a slower one, three pieces with two pauses of 0.3 s.
# Then the policy is written in place, at once, with max_active = 1.
# From the SERVER's rows (each transaction's start and end, logged inside
# it): at no instant did more than 2 transactions overlap, 2 did overlap
# (the cap was in use), and once `pqshim stat` shows max_active 1 (within
# 5 s), no 2 transactions that started after that overlapped. The shim's log
# names the refused empty policy; pgbench exits 0 (no wait timed out).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
APP=t_policy_inplace
LOG=$T/shim.log
POL=$(policy_new inplace "log = $LOG
[cap]
max_active = 2
wait_timeout = 30s
")
SEG=$(sed -n 's/^segment = //p' "$POL")
head_text() { printf '[shim]\nsegment = %s\nlog = %s\n' "$SEG" "$LOG"; }

xact_log inplace_log 0.02
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -f "$T/inplace_log.sql" -c 6 -j 6 -T 18 \
	>"$T/pgb.out" 2>"$T/pgb.err" &
PGB=$!
bg_track "$PGB"
rows() { [ "$(sql_primary "select count(*) from inplace_log where t1 is not null")" -ge "$1" ]; }
wait_until 10 rows 20 || fail "no transactions logged: $(tail -5 "$T/pgb.err")"
now() { sql_primary "select extract(epoch from clock_timestamp())"; }

# 1. cat > with a pause between truncation and write
note "in place, 0.8 s between truncation and write, at $(now)"
{
	sleep 0.8
	head_text
	printf '[cap]\nmax_active = 2\nwait_timeout = 25s\n'
} >"$POL"
sleep 1.2
# 2. a slow writer: its first half is a valid policy without a cap
note "slow writer (one pause of 0.3 s) at $(now)"
(
	head_text
	printf '[cap]\n'
	sleep 0.3
	printf 'max_active = 2\nwait_timeout = 20s\n'
) >"$POL"
sleep 1.2
# 3. slower: three pieces
note "slower writer (two pauses of 0.3 s) at $(now)"
(
	head_text
	sleep 0.3
	printf '[cap]\n'
	sleep 0.3
	printf 'max_active = 2\nwait_timeout = 15s\n'
) >"$POL"
sleep 1.2
kill -0 "$PGB" 2>/dev/null || fail "pgbench ended early: $(tail -5 "$T/pgb.err")"

# 4. the new value, written in place at once, takes effect
note "max_active = 1 written in place at $(now)"
{
	head_text
	printf '[cap]\nmax_active = 1\nwait_timeout = 15s\n'
} >"$POL"
cap_is() { [ "$(jqp "$POL" .cap.max_active)" = "$1" ]; }
wait_until 5 cap_is 1 || fail "stat never showed max_active 1: $(jqp "$POL" .cap)"
seen=$(now)
note "stat shows max_active 1 at $seen"
sleep 1.5
kill -0 "$PGB" 2>/dev/null || fail "pgbench ended early: $(tail -5 "$T/pgb.err")"
rc=0
wait "$PGB" || rc=$?
assert_eq "$rc" 0 "pgbench exit status (stderr: $(tail -5 "$T/pgb.err"))"
total=$(sql_primary "select count(*) from inplace_log where t1 is not null")
after=$(sql_primary "select count(*) from inplace_log where t1 is not null and t0 > to_timestamp($seen)")
note "transactions logged: $total, $after after max_active = 1 took effect"
assert_le "$(xact_overlap inplace_log)" 2 "server side: most transactions at once, under max_active = 2 then 1"
assert_eq "$(xact_overlap inplace_log)" 2 "server side: the cap of 2 was in use"
assert_ge "$after" 10 "transactions after max_active = 1 took effect"
assert_le "$(xact_overlap inplace_log "$seen")" 1 "server side: most transactions at once after max_active = 1"
grep -q "empty policy" "$LOG" || fail "the shim's log never refused the empty policy: $(cat "$LOG")"
grep "empty policy" "$LOG" | head -1 >&2
