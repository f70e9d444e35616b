#!/usr/bin/env bash
# t_robust_bad_start.sh - a process that starts while the policy file is
# broken never lifts the cap of the processes already on the segment.
#  max_active = 1: probe h holds the only slot inside a transaction; probe x
#  (started with the good policy) is connected.  The file is made unusable
#  (mode 0666, then garbage); a new psql starts on it and is refused
#  (on_error = fail-closed).  stat still shows max_active = 1, and x's
#  statement waits while h holds the slot (the server never runs it meanwhile);
#  once h commits, x runs.  A process that starts on a file naming no
#  segment (garbage) and guessed one moves to the policy's segment once the
#  file is good again, and is capped with the others.
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

# A process that starts on a file naming no segment it can read (garbage)
# guesses one from the path; once the policy is good again it must be on
# the policy's segment, under its cap - not on a segment of its own.
pcmd h "a exec c begin"
pcmd h "a exec c select 1"
printf 'garbage\n' >"$POL"
mkfifo "$T/n.in"
env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$POL" "$PY" "$LOAD" probe --app t_robust_bad_n \
	<"$T/n.in" >"$T/n.out" 2>"$T/n.err" &
NP=$!
bg_track $NP
exec {NFD}>"$T/n.in"
wait_until 20 grep -qx READY "$T/n.out" || fail "n: probe never READY: $(cat "$T/n.err")"
printf 'a connect c\n' >&"$NFD"
wait_until 10 grep -q '"seq": 1, ' "$T/n.out" || fail "n: no answer to its connect"
assert_eq "$(grep '"seq": 1, ' "$T/n.out" | sed 's/^R //' | jq .ok)" false "n: its connect on the broken file is refused"
sleep 0.6      # the broken file settles, as written
cp "$T/good.ini" "$POL"
# (an idle process notices the fixed file at its next call: a connect)
nseq=1
connected() {
	nseq=$((nseq + 1))
	printf 'a connect c\n' >&"$NFD"
	wait_until 10 grep -q "\"seq\": $nseq, " "$T/n.out" || return 1
	[ "$(grep "\"seq\": $nseq, " "$T/n.out" | sed 's/^R //' | jq .ok)" = true ] || { sleep 0.3; return 1; }
}
for ((i = 0; i < 15; i++)); do connected && break; done
[ "$(grep "\"seq\": $nseq, " "$T/n.out" | sed 's/^R //' | jq .ok)" = true ] ||
	fail "n: never connects once the policy is good: $(grep pqshim "$T/n.err")"
assert_eq "$(jqp "$POL" "[.processes[] | select(.pid == $NP)] | length")" 1 \
	"n: on the policy's segment once it was good ($(grep pqshim "$T/n.err" | tail -2))"
printf "a exec c select 'n'\n" >&"$NFD"
sleep 1
nseq=$((nseq + 1))
grep -q "\"seq\": $nseq, " "$T/n.out" && fail "n ran while h held the only slot: $(grep "\"seq\": $nseq, " "$T/n.out")"
pcmd h "a exec c commit"
wait_until 10 grep -q "\"seq\": $nseq, " "$T/n.out" || fail "n: its statement never ran"
assert_eq "$(grep "\"seq\": $nseq, " "$T/n.out" | sed 's/^R //' | jq -c '[.ok, .rows]')" '[true,[["n"]]]' "n after h's commit"
exec {NFD}>&-
wait $NP || fail "n: exit status: $(cat "$T/n.err")"
probe_end x   # first: x inherited the write end of h's fifo
probe_end h
