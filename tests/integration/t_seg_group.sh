#!/usr/bin/env bash
# t_seg_group.sh: several users on one host, with real users this test
# creates (removed at exit) and runs its clients as (runuser).
#  - [shim] group: two users of one group share one segment and one cap.
#    Under max_active = 1 they run 4 transactions at once (2 each); each
#    transaction stores clock_timestamp() at its start and end on the
#    server: no two of those intervals overlap (server peak 1 of 4). The
#    segment is /dev/shm/pqshim.g<gid>.<name>, mode 0660, that group.
#  - a third user outside the group is refused (not a member), and can
#    neither read nor change the segment, nor see it in pqshim ls/stat.
#  - a squatted name: before a user's programs start, another user creates
#    the file their segment would have (a plain file, a FIFO, a symlink; in
#    the group's name too): under on_error = fail-closed the program's query
#    fails with a pqshim: error naming the file and the owner found, and
#    nothing reaches the server; under fail-open it runs, capped within the
#    process, and says so.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
[ "$(id -u)" = 0 ] || fail "needs root to create users"
chmod 0755 "$T"

sfx=$$
G=pqtg$sfx UA=pqta$sfx UB=pqtb$sfx UC=pqtc$sfx
at_exit "userdel $UA 2>/dev/null; userdel $UB 2>/dev/null; userdel $UC 2>/dev/null; groupdel $G 2>/dev/null; true"
# /etc/passwd may be locked a moment by another user tool: try a few times.
retry() { local i; for i in 1 2 3 4 5; do "$@" && return 0; sleep 0.5; done; fail "$*"; }
retry groupadd "$G"
retry useradd -M -N -s /bin/sh -G "$G" "$UA"
retry useradd -M -N -s /bin/sh -G "$G" "$UB"
retry useradd -M -N -s /bin/sh "$UC"
gid=$(getent group "$G" | cut -d: -f3)
uidA=$(id -u "$UA")
at_exit "rm -f /dev/shm/pqshim.g$gid.* /dev/shm/pqshim.$uidA.* /dev/shm/pqshim.$(id -u "$UC").*"

# as USER: run CMD... under the shim with POLICY ($pol)
as() {
	local u=$1
	shift
	runuser -u "$u" -- env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$pol" "$@"
}

# A policy root owns and nobody else may write: every user may use it.
shared_policy() { # FILE TEXT
	printf '%s' "$2" >"$1"
	chmod 0644 "$1"
}

sql_primary "drop table if exists seg_grp; create table seg_grp(who text, t0 timestamptz, t1 timestamptz);
	grant all on seg_grp to public" >/dev/null

# --- two users, one group, one cap of 1 ------------------------------------------
pol=$T/group.ini
shared_policy "$pol" "[shim]
segment = pqt-grp-$sfx
group = $G
[cap]
max_active = 1
wait_timeout = 60s
"
xact() { # USER TAG
	as "$1" "$PSQL" -X -q -v ON_ERROR_STOP=1 -c "begin" \
		-c "insert into seg_grp values ('$2', clock_timestamp())" \
		-c "select pg_sleep(0.4)" \
		-c "update seg_grp set t1 = clock_timestamp() where who = '$2'" \
		-c "commit" >"$T/x.$2" 2>&1
}
pids=()
for tag in a1 b1 a2 b2; do
	u=$UA
	[ "${tag:0:1}" = b ] && u=$UB
	xact "$u" "$tag" &
	pids+=("$!")
	bg_track "$!"
done
for p in "${pids[@]}"; do wait "$p" || fail "a transaction failed: $(cat "$T"/x.* | head -5)"; done
assert_eq "$(sql_primary "select count(*) from seg_grp where t1 is not null")" 4 "4 transactions ran"
peak=$(sql_primary "select max((select count(*) from seg_grp b where b.t0 <= a.t0 and b.t1 > a.t0)) from seg_grp a")
assert_eq "$peak" 1 "server-side peak of the two users' transactions under max_active = 1"
f=/dev/shm/pqshim.g$gid.pqt-grp-$sfx
[ -f "$f" ] || fail "no group segment $f: $(echo /dev/shm/*pqt-grp*)"
assert_eq "$(stat -c '%a %G' "$f")" "660 $G" "the group segment's mode and group"
owner=$(stat -c %U "$f")
[ "$owner" = "$UA" ] || [ "$owner" = "$UB" ] || fail "owned by $owner, not a member"
ls_b=$(runuser -u "$UB" -- "$PQSHIM" ls)
assert_match "$ls_b" "pqt-grp-$sfx +$G +0 +0 .*$pol" "the other member sees it in pqshim ls"
assert_eq "$(runuser -u "$UB" -- "$PQSHIM" stat -s "pqt-grp-$sfx" --json | jq .totals.xacts)" 4 \
	"... and reads it with stat -s"

# --- a third user, outside the group ------------------------------------------------
set +e
out=$(as "$UC" "$PSQL" -X -At -c "insert into seg_grp values ('c', clock_timestamp())" 2>&1)
rc=$?
set -e
assert_eq "$rc" 2 "the outsider's program cannot connect"
assert_match "$out" "pqshim: connection refused: \\[shim\\] group = $G: $UC \\(uid [0-9]+\\) is not a member of it" \
	"the outsider is told why"
assert_eq "$(sql_primary "select count(*) from seg_grp where who = 'c'")" 0 "nothing of the outsider ran"
if runuser -u "$UC" -- cat "$f" >/dev/null 2>&1; then fail "the outsider can read the segment"; fi
if runuser -u "$UC" -- sh -c "printf x >>'$f'" 2>/dev/null; then fail "the outsider can change the segment"; fi
set +e
out=$(runuser -u "$UC" -- "$PQSHIM" stat -s "pqt-grp-$sfx" 2>&1)
rc=$?
set -e
assert_eq "$rc" 1 "the outsider's stat -s"
assert_match "$out" "no segment pqt-grp-$sfx" "... finds no such segment of its own or its groups"

# --- squatted names -------------------------------------------------------------------
sql_primary "create table if not exists seg_sq(who text); grant all on seg_sq to public" >/dev/null
squat_try() { # KIND NAME [GROUP]: UC squats, UA's program must refuse
	local kind=$1 name=$2 grp=${3:-} path
	if [ -n "$grp" ]; then path=/dev/shm/pqshim.g$gid.$name; else path=/dev/shm/pqshim.$uidA.$name; fi
	case $kind in
	file) runuser -u "$UC" -- sh -c "umask 0; : >'$path'; chmod 0666 '$path'" ;;
	fifo) runuser -u "$UC" -- mkfifo -m 0666 "$path" ;;
	link) runuser -u "$UC" -- ln -s /etc/passwd "$path" ;;
	esac
	pol=$T/sq-$name.ini
	shared_policy "$pol" "[shim]
segment = $name
${grp:+group = $grp
}on_error = ${4:-fail-closed}
[cap]
max_active = 1
"
	set +e
	out=$(timeout 20 runuser -u "$UA" -- env LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$pol" \
		"$PSQL" -X -At -c "insert into seg_sq values ('$name')" 2>&1)
	rc=$?
	set -e
}
for kind in file fifo link; do
	squat_try $kind "pqt-sq-$kind-$sfx"
	assert_eq "$rc" 2 "squatted by a $kind: the program's query fails (fail-closed)"
	what="a regular file"
	[ $kind = fifo ] && what="a FIFO"
	[ $kind = link ] && what="a symlink"
	assert_match "$out" "pqshim: connection refused: segment /dev/shm/pqshim.$uidA.pqt-sq-$kind-$sfx refused: owner $UC \\(uid [0-9]+\\), .*$what" \
		"squatted by a $kind: the error names the file, the owner found and what it is"
	assert_eq "$(sql_primary "select count(*) from seg_sq where who = 'pqt-sq-$kind-$sfx'")" 0 \
		"squatted by a $kind: nothing ran"
done
squat_try link "pqt-sq-g-$sfx" "$G"
assert_eq "$rc" 2 "the group's name squatted: refused"
assert_match "$out" "segment /dev/shm/pqshim.g$gid.pqt-sq-g-$sfx refused: owner $UC" "... naming the squatter"
squat_try file "pqt-sq-open-$sfx" "" fail-open
assert_eq "$rc" 0 "fail-open: the program runs anyway"
assert_match "$out" "refused: owner $UC .*the cap holds within this process only \\(on_error = fail-open\\)" \
	"fail-open: it says so"
assert_eq "$(sql_primary "select count(*) from seg_sq where who = 'pqt-sq-open-$sfx'")" 1 "fail-open: the statement ran"
