#!/usr/bin/env bash
# t_tool_top.sh: `pqshim top` on a live workload (pgbench, 3 clients in 3
# threads, under a cap of 1 active transaction; a psql session held open on
# a fifo). Not on a terminal: `-n 2` prints exactly two plain
# snapshots, without escapes, the second with rates. Under a pseudo-terminal
# (script(1)): the alternate screen and the hidden cursor on entry, `q`
# quits at once with exit 0, and whatever ends it - q, Ctrl-C (SIGINT),
# SIGTERM - the output ends by leaving the alternate screen and the
# terminal's settings (stty -g) are what they were before. Plus usage errors.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v script >/dev/null || fail "script(1) (util-linux) is needed"
APP=t_tool_top
POL=$(policy_new tool_top "[cap]
max_active = 1
wait_timeout = 30s
")
ESC=$'\033'

# --- usage
"$PQSHIM" top --help | grep -q '^usage: pqshim top' || fail "top --help"
"$PQSHIM" --help | grep -q '^  top ' || fail "pqshim --help lists top"
for bad in "-n 0" "-n x" "-d 0.01" "-d x" "-n" "--bogus"; do
	rc=0
	# shellcheck disable=SC2086 # split on purpose
	"$PQSHIM" top -p "$POL" $bad >/dev/null 2>&1 || rc=$?
	assert_eq "$rc" 2 "top $bad: usage error"
done

# --- the workload
"$PGBENCH" -i -q -s 1 >"$T/init.log" 2>&1 || fail "pgbench -i: $(tail -3 "$T/init.log")"
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 3 -j 3 -T 30 \
	>"$T/bench.out" 2>"$T/bench.err" &
BENCH=$!
bg_track "$BENCH"
PGAPPNAME=${APP}_psql psql_hold psql "$POL"
PSQLPID=$RUN
running() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $BENCH)] | length")" = 3 ]; }
wait_until 10 running || fail "pgbench's 3 connections never showed"
held_send psql 'select 1;'
session() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $PSQLPID)] | length")" = 1 ]; }
wait_until 10 session || fail "the psql session never showed ($(cat "$T/psql.err"))"

# --- not a terminal: -n 2 prints two plain snapshots, one interval apart
t0=${EPOCHREALTIME/./}
"$PQSHIM" top -p "$POL" -n 2 -d 0.5 >"$T/plain.out" 2>"$T/plain.err" || fail "top -n 2 failed: $(cat "$T/plain.err")"
took=$(((${EPOCHREALTIME/./} - t0) / 1000))
assert_ge "$took" 450 "top -n 2 -d 0.5 waited one interval"
assert_le "$took" 3000 "top -n 2 -d 0.5 ended after the second"
assert_eq "$(grep -c '^pqshim top ' "$T/plain.out")" 2 "snapshots printed by top -n 2"
! grep -q "$ESC" "$T/plain.out" || fail "escape sequences in top's plain output"
[ ! -s "$T/plain.err" ] || fail "top wrote to stderr: $(cat "$T/plain.err")"
second=$(awk '/^pqshim top /{n++} n == 2' "$T/plain.out")
first=$(awk '/^pqshim top /{n++} n == 1' "$T/plain.out")
assert_match "$first" $'\nrates   - ' "first snapshot: no rates yet"
assert_match "$second" $'\nrates   [0-9.]+ stmt/s  [0-9.]+ xact/s  [0-9.]+ waits/s' "second snapshot: rates"
stmts=$(sed -n 's/^rates   \([0-9.]*\) stmt\/s.*/\1/p' <<<"$second")
assert_ge "$stmts" 1 "statements per second while pgbench runs"
assert_match "$second" $'\ncap host +active +[01]/1 +\\[[#-]\\]' "the cap line with its bar"
assert_match "$second" $'\nwaits   [0-9]+  timeouts [0-9]+  p50 [0-9.]+ms  p99 [0-9.]+ms' "the wait line"
assert_match "$second" $'\ntargets  direct 4 \\(' "connections per target"
assert_match "$second" $'\n'"$BENCH +pgbench +3 +3 +[01] +[0-9]+ +[0-9.]+ +[0-9.]+"$'\n' "pgbench's line"
assert_match "$second" $'\n'"$PSQLPID +psql +1 +1 +" "psql's line"
# Threads under their process: pgbench's three, one connection each.
assert_eq "$(awk -v p="$BENCH" '/^[0-9]/ { cur = $1 } cur == p && /^  tid / { n++ } END { print n + 0 }' <<<"$second")" 3 \
	"pgbench's thread lines"
# Processes sorted by the slots they hold: a holder (HELD 1) comes first.
held_first=$(awk '/^PID /{go=1; next} go && /^[0-9]/ { print $5; exit }' <<<"$second")
max_held=$(awk '/^PID /{go=1; next} go && /^[0-9]/ && $5 > m { m = $5 } END { print m + 0 }' <<<"$second")
assert_eq "$held_first" "$max_held" "the first process holds the most slots"

# --- a terminal: script(1) gives top a pseudo-terminal.
# in_pty NAME: run top in a pty inside a shell that saves `stty -g` before
# and after; top's pid goes to $T/NAME.pid, its exit status to $T/NAME.rc.
in_pty() {
	local name=$1
	script -qfec "bash -c 'stty -g >$T/$name.before; echo \$\$ >$T/$name.sh;
		$PQSHIM top -p $POL -d 0.3; echo \$? >$T/$name.rc; stty -g >$T/$name.after'" /dev/null
}
# restored NAME: the output left the alternate screen last, the terminal
# settings are back.
restored() {
	local name=$1
	[ -s "$T/$name.rc" ] || fail "$name: top did not end: $(od -c "$T/$name.out" | tail -3)"
	# the shell writes .rc, then .after: wait for the second too
	wait_until 5 test -s "$T/$name.after" || fail "$name: the shell did not record the terminal after top"
	[ "$(head -c 8 "$T/$name.out")" = "${ESC}[?1049h" ] || fail "$name: no alternate screen at the start"
	grep -q "$ESC\[?25l" "$T/$name.out" || fail "$name: the cursor was not hidden"
	grep -q 'pqshim top ' "$T/$name.out" || fail "$name: nothing drawn"
	# script(1) may add CR/LF after the program's last byte.
	tail -c 64 "$T/$name.out" | tr -d '\r\n' | grep -q "$ESC\[?25h$ESC\[?1049l\$" ||
		fail "$name: the output does not end by leaving the alternate screen: $(tail -c 32 "$T/$name.out" | od -c)"
	cmp -s "$T/$name.before" "$T/$name.after" ||
		fail "$name: terminal settings not restored: $(cat "$T/$name.before") -> $(cat "$T/$name.after")"
}
# top_pid NAME: top's pid, a child of the shell that in_pty started.
top_pid() { [ -s "$T/$1.sh" ] && pgrep -P "$(cat "$T/$1.sh")" -x pqshim; }
# The keyboard: a fifo that we keep open (fd 4), so script(1) never sees
# its input end; what we write to fd 4 reaches top as keys.
mkfifo "$T/keys"
exec 4<>"$T/keys"
at_exit 'exec 4>&-'

# q quits at once.
in_pty q <"$T/keys" >"$T/q.out" 2>&1 &
PTY=$!
bg_track "$PTY"
wait_until 10 top_pid q || fail "q: top not started"
sleep 1.2
t0=${EPOCHREALTIME/./}
printf q >&4
wait_until 10 test -s "$T/q.rc" || fail "top did not quit on q"
assert_le "$(((${EPOCHREALTIME/./} - t0) / 1000))" 1500 "top quits at once on q"
assert_eq "$(cat "$T/q.rc")" 0 "top's exit status after q"
restored q
grep -q "$BENCH" "$T/q.out" || fail "q: pgbench not shown on the terminal"
kill "$PTY" 2>/dev/null || true
wait "$PTY" 2>/dev/null || true

# signal NAME SIG RC: top, killed with SIG, exits RC and restores the terminal.
signal() {
	local name=$1 sig=$2 want=$3 pid
	in_pty "$name" <"$T/keys" >"$T/$name.out" 2>&1 &
	PTY=$!
	bg_track "$PTY"
	wait_until 10 top_pid "$name" || fail "$name: top not started"
	pid=$(top_pid "$name")
	sleep 0.7 # a frame or two
	kill -"$sig" "$pid"
	wait_until 5 test -s "$T/$name.rc" || fail "$name: top did not end on SIG$sig"
	assert_eq "$(cat "$T/$name.rc")" "$want" "$name: top's exit status on SIG$sig"
	restored "$name"
	kill "$PTY" 2>/dev/null || true
	wait "$PTY" 2>/dev/null || true
}
signal int INT 0
signal term TERM 143
signal hup HUP 129

# The workload ran throughout, with no timeout.  (SIGTERM: a background
# job ignores SIGINT.)
kill -TERM "$BENCH"
wait "$BENCH" 2>/dev/null || true
assert_eq "$(jqp "$POL" .cap.timeouts)" 0 "no wait timed out"
held_end psql 0
