#!/usr/bin/env bash
# t_ro_nothread.sh - a single-threaded program under a read-only policy
# stays single-threaded (no ticker thread: /proc/PID/status "Threads: 1"
# while connected, before and after a switch), yet its idle connection
# leaves the old target within drain_timeout of the flag appearing while it
# sends nothing (the segment's drainer process notices and wakes it), and
# its next statement runs on the replica without an error. kill -9 of the
# drainer: the program's next call starts another, and the way back (the
# flag removed) drains the replica the same way.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

FLAG=$T/read-only.flag
POL=$(ro_policy nothread "$T/shim.log" "drain_timeout = 5s")
APP=t_ro_nothread

threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
tasks() { find "/proc/$1/task" -mindepth 1 -maxdepth 1 | wc -l; }
# each task's name and where it sleeps (for a failure's message)
names() {
	local x
	for x in "/proc/$1/task/"*; do
		printf '%s:%s ' "$(cat "$x/comm" 2>/dev/null)" "$(cat "$x/wchan" 2>/dev/null)"
	done
}
SEG=/dev/shm/pqshim.$(id -u).$(sed -n 's/^segment = //p' "$POL")
# The drainers of this test's segment: processes named pqshim-drainer with
# the segment open.  Others come and go at any moment (those of other tests,
# earlier or running beside this one; a loser of the election, which opens
# the segment, fails to take the lock and exits): every read of /proc here
# tolerates a process that vanished, and none fails the caller's `set -e`.
drainers() {
	local d
	for d in $(pgrep -x pqshim-drainer); do
		if find "/proc/$d/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -qx "$SEG"; then
			echo "$d"
		fi
	done | tr '\n' ' '
}
# The elected one: the drainer whose open file of the segment holds the OFD
# write lock on the byte at offset uid (its fdinfo lists the lock).
holder() {
	local d f uid
	uid=$(id -u)
	for d in $(pgrep -x pqshim-drainer); do
		for f in "/proc/$d/fd/"*; do
			if [ "$(readlink "$f" 2>/dev/null)" = "$SEG" ] &&
				grep -qE "^lock:.*OFDLCK +ADVISORY +WRITE +-1 +[0-9a-f:]+ $uid $uid\$" \
					"/proc/$d/fdinfo/${f##*/}" 2>/dev/null; then
				echo "$d"
			fi
		done
	done | tr '\n' ' '
}
on() { [ "$(server_backends "$APP" "${2:-}")" = "$1" ]; }

PGAPPNAME=$APP psql_hold h "$POL"
psql_feed h "select 1;"
pid=${HELD_PID[h]}
assert_eq "$(server_backends "$APP")" 1 "connected to the primary"
assert_eq "$(threads "$pid")" 1 "psql connected under a read-only policy: Threads (tasks: $(names "$pid"))"
assert_eq "$(tasks "$pid")" 1 "psql's tasks"
some() { [ -n "$(holder)" ]; }
wait_until 5 some || fail "no drainer holds the lock (drainers: $(drainers))"
d=$(holder)
d=${d% }
note "drainer: $d"
# a second program of the segment: still one drainer (the same one), a child of neither
PGAPPNAME=${APP}_2 psql_hold h2 "$POL"
psql_feed h2 "select 1;"
sleep 0.5                      # time for a second drainer to show, had h2 started one
only() { [ "$(drainers)" = "$d " ]; }
wait_until 5 only || fail "drainers of the segment besides $d (a loser leaves at once): $(drainers)"
assert_eq "$(holder)" "$d " "the drainer that holds the lock after the second program came"
# the drainer's birth touched no program's record: the segment lists both
# programs, each with its connection, and not the drainer
S=$(stat_json "$POL")
assert_eq "$(jq -r '[.processes[] | "\(.pid):\(.connections)"] | sort | join(" ")' <<<"$S")" \
	"$(printf '%s\n' "$pid:1" "${HELD_PID[h2]}:1" | sort | tr '\n' ' ' | sed 's/ $//')" \
	"the segment's processes (pid:connections)"
ppid=$(awk '{ print $4 }' "/proc/$d/stat" 2>/dev/null) || fail "the drainer $d vanished"
if [ "$ppid" = "$pid" ] || [ "$ppid" = "${HELD_PID[h2]}" ]; then
	fail "the drainer is a child of a program (ppid $ppid)"
fi
# it holds none of the programs' files: /dev/null, the log, the segment
held=$(find "/proc/$d/fd" -mindepth 1 -printf '%l\n' | grep -v -x -e /dev/null -e "$T/shim.log" -e "$SEG" || true)
assert_eq "$held" "" "descriptors the drainer holds besides /dev/null, the log and the segment"
held_end h2 0

# --- read-only on, psql sending nothing --------------------------------------
touch "$FLAG"
start=$(date +%s.%N)
wait_until 8 on 0 || fail "the idle connection stayed on the primary: $(server_activity "$APP" "pid, state") (log: $(cat "$T/shim.log"))"
took=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
note "the primary had none of psql's connections ${took}s after the flag"
assert_le "$took" 5 "drained within drain_timeout (5 s)"
assert_eq "$(threads "$pid")" 1 "still one thread after the drain"
psql_feed h "select pg_is_in_recovery();"
assert_eq "$(tail -n 1 "$T/h.out")" t "psql's next statement ran on the replica"
assert_eq "$(cat "$T/h.err")" "" "psql saw no error"
assert_eq "$(server_backends "$APP" replica)" 1 "on the replica"
# logged at the program's next call (the handler writes nothing)
grep -q "ended 1 idle connection" "$T/shim.log" || fail "the drain is not logged: $(cat "$T/shim.log")"

# --- kill -9 of the drainer, then back ----------------------------------------
d=$(holder)
[ -n "$d" ] || fail "no drainer holds the lock (drainers: $(drainers))"
# shellcheck disable=SC2086
kill -9 $d
gone() { [ -z "$(drainers)" ]; }
wait_until 5 gone || fail "drainer not gone"
sleep 2.1                      # a look for the drainer is due at psql's next call (every 2 s)
psql_feed h "select 2;"
wait_until 5 some || fail "no new drainer after psql's call (drainers: $(drainers))"
note "new drainer: $(holder)"
rm -f "$FLAG"
start=$(date +%s.%N)
wait_until 8 on 0 replica || fail "the idle connection stayed on the replica: $(server_activity "$APP" "pid, state" replica)"
took=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.2f", a - b }')
note "the replica had none of psql's connections ${took}s after the flag went"
assert_le "$took" 5 "drained back within drain_timeout"
psql_feed h "select pg_is_in_recovery();"
assert_eq "$(tail -n 1 "$T/h.out")" f "back on the primary"
assert_eq "$(cat "$T/h.err")" "" "still no error"
assert_eq "$(threads "$pid")" 1 "one thread to the end"
held_end h 0
# the last program gone, the drainer leaves (2 s later)
wait_until 6 gone || fail "the drainer stayed: $(drainers)"
