#!/usr/bin/env bash
# t_seg_sigbus.sh: a segment truncated under running programs does not kill
# them (a MAP_SHARED file that shrinks makes every access past its end a
# SIGBUS). A C client runs `insert into seg_bus values (I)` every 50 ms;
# the test truncates its segment file to 0 bytes.
#  - on_error = fail-closed: the program lives on; its statements are
#    refused with a pqshim: error naming the truncated segment (SQLSTATE
#    58000), and from the first refusal on no statement reaches the server.
#  - on_error = fail-open: the program lives on, its statements keep
#    running (capped within the process), and the log says so.
#  - pqshim top watching the segment exits 1 saying why (not killed, not
#    showing the zeros as figures); stat refuses the truncated file.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
# shellcheck source-path=SCRIPTDIR source=seg_hold.sh
. "$(dirname "$0")/seg_hold.sh"
sql_primary "drop table if exists seg_bus; create table seg_bus(i int)" >/dev/null

count() { grep -c "$1" "$out" || true; }
at_least() { [ "$(count "$1")" -ge "$2" ]; }
for mode in fail-closed fail-open; do
	sql_primary "truncate seg_bus" >/dev/null
	POL=$(policy_new "bus-$mode" "on_error = $mode
[cap]
max_active = 2
")
	seg=$(sed -n 's/^segment = //p' "$POL")
	out=$T/$mode.out
	mkfifo "$T/$mode.fifo"
	exec 9<>"$T/$mode.fifo"
	LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL "$T/hold" loop <"$T/$mode.fifo" >"$out" 2>"$T/$mode.err" 9>&- &
	pid=$!
	bg_track "$pid"
	wait_until 20 at_least ' ok$' 5 || fail "$mode: the client does not run: $(cat "$out" "$T/$mode.err")"
	top_pid=
	if [ $mode = fail-closed ]; then # the tool watching it lives on too
		"$PQSHIM" top -s "$seg" -n 200 -d 0.1 >"$T/top.out" 2>"$T/top.err" &
		top_pid=$!
		bg_track "$top_pid"
		wait_until 10 grep -q "^pqshim top" "$T/top.out" || fail "top does not run: $(cat "$T/top.err")"
	fi
	truncate -s 0 "/dev/shm/pqshim.$(id -u).$seg"
	if [ $mode = fail-closed ]; then
		wait_until 10 at_least ' refused ' 5 ||
			fail "$mode: no refusals: $(tail -3 "$out") $(cat "$T/$mode.err")"
	else
		n=$(count ' ok$')
		wait_until 10 at_least ' ok$' $((n + 20)) ||
			fail "$mode: statements stopped: $(tail -3 "$out") $(cat "$T/$mode.err")"
	fi
	kill -0 "$pid" 2>/dev/null || fail "$mode: the program died: $(tail -2 "$out")"
	exec 9>&-
	rc=0
	wait "$pid" || rc=$?
	assert_eq "$rc" 0 "$mode: the program exits normally (not killed by SIGBUS)"
	if [ $mode = fail-closed ]; then
		rc=0
		wait "$top_pid" || rc=$?
		assert_eq "$rc" 1 "top exits 1 (not killed by SIGBUS, nor showing zeros as figures)"
		assert_match "$(cat "$T/top.err")" "pqshim top: segment .*$seg was truncated" "top says why"
		run_rc=0
		"$PQSHIM" stat -s "$seg" >/dev/null 2>"$T/stat.err" || run_rc=$?
		assert_eq "$run_rc" 1 "stat on the truncated segment"
		assert_match "$(cat "$T/stat.err")" "refused: 0 bytes, shorter than a segment.s header: truncated" "stat says why"
		first=$(grep -m1 ' refused ' "$out" | cut -d' ' -f1)
		assert_match "$(grep -m1 ' refused ' "$out")" \
			"refused 58000: pqshim: statement refused: segment /dev/shm/pqshim.$(id -u).$seg was truncated under this process: the cap cannot be enforced \\(on_error = fail-closed\\)" \
			"$mode: the refusal names the segment, with SQLSTATE 58000"
		assert_eq "$(grep -c ' ok$' <(awk -v f="$first" '$1 >= f' "$out"))" 0 "$mode: nothing ran after the first refusal"
		assert_eq "$(sql_primary "select count(*) from seg_bus where i >= $first")" 0 \
			"$mode: the server saw no statement from the first refusal on"
		ok=$(grep -c ' ok$' "$out")
		assert_eq "$(sql_primary "select count(*) from seg_bus")" "$ok" "$mode: the server saw exactly the statements that ran"
	else
		assert_eq "$(grep -c ' refused ' "$out")" 0 "$mode: nothing refused"
		assert_match "$(cat "$T/$mode.err")" "truncated under this process.*the cap holds within this process only \\(on_error = fail-open\\)" \
			"$mode: the log says so"
		assert_eq "$(sql_primary "select count(*) from seg_bus")" "$(grep -c ' ok$' "$out")" "$mode: the server saw every statement"
	fi
done
