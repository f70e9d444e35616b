#!/usr/bin/env bash
# t_robust_bad_start.sh - a process that starts while the policy file is
# broken never lifts the cap of the processes already on the segment.
#  max_active = 1: probe h holds the only slot inside a transaction; probe x
#  (started with the good policy) is connected.  The file is made unusable
#  (mode 0666, then garbage); a new psql starts on it and is refused
#  (on_error = fail-closed).  stat still shows max_active = 1, and x's
#  statement waits while h holds the slot (the server never runs it meanwhile);
#  once h commits, x runs.
#  Before the fix, the new process published its defaults (no cap) to the
#  segment: x's statement ran at once beside h's transaction.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/probe.sh"

POL=$(policy_new badstart "[cap]
max_active = 1
wait_timeout = 10s
")
cp "$POL" "$T/good.ini"
probe_start h "$POL" t_robust_bad_h
pcmd h "a connect c"
pcmd h "a exec c begin"
pcmd h "a exec c select 1"
probe_start x "$POL" t_robust_bad_x
pcmd x "a connect c"
assert_eq "$(jqp "$POL" '"\(.cap.max_active) \(.cap.active)"')" "1 1" "stat: the cap, h holding it"
for breakage in mode garbage; do
	if [ "$breakage" = mode ]; then
		chmod 0666 "$POL"
	else
		chmod 0600 "$POL"
		printf '[cap]\nmax_active = lots\n' >>"$POL"
	fi
	out=$(env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" PGAPPNAME=t_robust_bad_new \
		timeout 10 "$PSQL" -X -A -t -c 'select 1' 2>&1) && fail "$breakage: psql on a broken policy ran: $out"
	assert_match "$out" 'pqshim: connection refused: the policy is unusable' "$breakage: the new process refuses"
	assert_eq "$(jqp "$POL" .cap.max_active)" 1 "$breakage: stat: the segment's cap after a process started on the broken file"
done
psend x "a exec c select 'x'"
XS=$SEQ
sleep 1
pending x "$XS" || fail "x ran while h held the only slot: $(grep "seq\": $XS," "$T/x.out")"
assert_eq "$(sql_primary "select count(*) from pg_stat_activity where application_name = 't_robust_bad_x'
	and query like '%''x''%'")" 0 "server: x's statement not run while h holds the slot"
pcmd h "a exec c commit"
presult x "$XS" 10
assert_eq "$(r .ok) $(r '.rows | tojson')" 'true [["x"]]' "x after h's commit: $R"
cp "$T/good.ini" "$POL"
probe_end x   # first: x inherited the write end of h's fifo
probe_end h
