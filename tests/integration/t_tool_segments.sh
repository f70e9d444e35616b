#!/usr/bin/env bash
# t_tool_segments.sh: how the tool finds segments, and never makes one.
#  - stat (table and --json), top and drain on a name that does not exist:
#    exit 1, naming the segments that do; nothing created (drain -s typo is
#    not "drained"). Empty, odd and path-like names: exit 2, nothing created.
#    stat -p on a missing policy file: exit 1, nothing created.
#  - stat -p POLICY while the file is broken (its `segment =` line gone)
#    finds the segment its running program uses (the path the program
#    published) and shows the program and the error.
#  - stat --json stays valid UTF-8 when the policy error quotes raw bytes
#    (python3's json accepts it; they show as U+FFFD).
#  - pqshim ls lists the segment (policy, processes, connections); pqshim
#    rm refuses while a live process uses it, removes it after, and says
#    so when there is nothing to remove.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
# shellcheck source-path=SCRIPTDIR source=seg_hold.sh
. "$(dirname "$0")/seg_hold.sh"
uid=$(id -u)
# Segment names, not a count: a concurrent run's segments come and go.
shm_names() { find /dev/shm -maxdepth 1 -name 'pqshim.*' -printf '%f\n' | sort; }

run_rc() { # CMD...: sets rc and out (stdout+stderr)
	set +e
	out=$("$@" 2>&1)
	rc=$?
	set -e
}

# --- a name that does not exist -------------------------------------------------
POL=$(policy_new live "[cap]
max_active = 2
")
seg=$(sed -n 's/^segment = //p' "$POL")
mkfifo "$T/fifo"
exec 9<>"$T/fifo"
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL "$T/hold" conns 1 <"$T/fifo" >"$T/hold.out" 2>&1 9>&- &
HOLD=$!
bg_track "$HOLD"
wait_until 20 grep -q READY "$T/hold.out" || fail "holder: $(cat "$T/hold.out")"
before=$(shm_names)
typo=pqt-typo-$$
for cmd in "stat -s $typo" "stat -s $typo --json" "top -s $typo -n 1" "drain -s $typo --timeout 1s"; do
	# shellcheck disable=SC2086
	run_rc "$PQSHIM" $cmd
	assert_eq "$rc" 1 "pqshim $cmd: exit"
	assert_match "$out" "no segment $typo .*segments of this user and its groups: .*$seg" \
		"pqshim $cmd: says so, naming those that exist"
	[ -e "/dev/shm/pqshim.$uid.$typo" ] && fail "pqshim $cmd created a segment"
done
for bad in "" "a/b" ".." "../$seg" "x y"; do
	run_rc "$PQSHIM" stat -s "$bad"
	assert_eq "$rc" 2 "stat -s '$bad': exit"
	assert_match "$out" "bad segment name" "stat -s '$bad': refused"
done
run_rc "$PQSHIM" stat -p "$T/nonexistent.ini"
assert_eq "$rc" 1 "stat -p on a missing policy file"
# what any of these would have made is named after the typo or the policy file
made=$(comm -13 <(echo "$before") <(shm_names) | grep -e "$typo" -e nonexistent || true)
assert_eq "$made" "" "no segment created by any of these"

# --- stat -p on a broken policy: the running program's segment -------------------
printf '[cap]\nmax_active = lots\n' >"$POL"     # no segment line any more
S=$(stat_json "$POL")
assert_eq "$(jq '.processes | length' <<<"$S")" 1 "stat -p on the broken file shows the running program"
assert_eq "$(jq '.processes[0].pid' <<<"$S")" "$HOLD" "... by its pid"
assert_eq "$(jq '.connections | length' <<<"$S")" 1 "... and its connection"
assert_eq "$(jq .cap.max_active <<<"$S")" 2 "... and the cap still in force"
assert_match "$(jq -r .policy.error <<<"$S")" 'live.ini:2: bad value "lots" for max_active' "... and the error"

# --- raw bytes in a policy error: still valid JSON -----------------------------
printf '[shim]\nsegment = %s\n[cap]\nmax_active = \xff\xfe\xc3\n' "$seg" >"$POL"
# json.loads on the raw bytes decodes strictly; json.load(sys.stdin) would
# not (Python reads stdin with surrogateescape here and accepts anything).
error_shown() { "$PQSHIM" stat -s "$seg" --json | python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.stdin.buffer.read())["policy"]["error"] else 1)'; }
wait_until 10 error_shown ||
	fail "stat -s --json: not valid JSON, or no error: $("$PQSHIM" stat -s "$seg" --json | head -c 600)"
for how in "-s $seg" "-p $POL"; do
	# shellcheck disable=SC2086
	err=$("$PQSHIM" stat $how --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.buffer.read())["policy"]["error"])')
	assert_match "$err" $'bad value "\ufffd\ufffd\ufffd" for max_active' "stat $how --json: raw bytes shown as U+FFFD"
done

# --- ls and rm ---------------------------------------------------------------------
run_rc "$PQSHIM" ls
assert_eq "$rc" 0 "ls"
assert_match "$out" "$seg +- +1 +1 +20[0-9-]+ [0-9:]+ +20[0-9-]+ [0-9:]+ +$(realpath "$POL")" \
	"ls: name, no group, 1 process, 1 connection, created, last used, policy"
run_rc "$PQSHIM" rm "$seg"
assert_eq "$rc" 1 "rm while in use"
assert_match "$out" "segment $seg is in use by 1 live process: pid $HOLD \\(hold\\); not removed" "rm says who uses it"
[ -f "/dev/shm/pqshim.$uid.$seg" ] || fail "rm removed a segment in use"
exec 9>&-
wait "$HOLD" || fail "holder failed"
run_rc "$PQSHIM" rm "$seg"
assert_eq "$rc" 0 "rm once nobody uses it: $out"
assert_match "$out" "removed segment $seg" "rm says so"
[ -e "/dev/shm/pqshim.$uid.$seg" ] && fail "rm left the file"
run_rc "$PQSHIM" rm "$seg"
assert_eq "$rc" 1 "rm of a segment that is gone"
assert_match "$out" "no segment $seg" "... says so"
run_rc "$PQSHIM" rm "../$seg"
assert_eq "$rc" 2 "rm of a path-like name"
