#!/usr/bin/env bash
# t_out_shm_full.sh: a segment that /dev/shm has no room for is never
# created half-backed. In a private mount namespace whose /dev/shm is a
# 4 MiB tmpfs with 3 MiB of it taken, a psycopg2 program under
# max_active = 1 (the segment needs about 1.6 MB) is refused with a
# sentence that says /dev/shm is full and how much the segment needs, no
# segment is left in /dev/shm, and the program exits normally. Once there is
# room (the filler removed), the next program runs its statement.
# (Before: ftruncate made a sparse file, which was linked into place and
# failed page by page: every program got SIGBUS on the records, caught as
# "segment ... was truncated under this process", and the broken file stayed
# for every later program: the next one, with room again, hung for good in
# its start-up, on the cap's lock that the first had held when its mapping
# was swapped for a private one, so that its exit never marked it
# abandoned (killed here after 10 s: second=137).)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root for a private mount namespace"
POL=$(policy_new shmfull "[cap]
max_active = 1
wait_timeout = 3s
")
cat >"$T/inner.sh" <<EOF
set -u
mount -t tmpfs -o size=4m pqt-shm /dev/shm || exit 90
dd if=/dev/zero of=/dev/shm/filler bs=64k count=48 2>/dev/null || exit 91
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL timeout -s KILL 10 $PY -c '
import psycopg2
try:
    c = psycopg2.connect(application_name="t_out_shm_full"); c.autocommit = True
    c.cursor().execute("select 1"); print("RAN")
except psycopg2.Error as e:
    print("REFUSED", str(e).strip())
' >"$T/first.out" 2>"$T/first.err"
echo "first=\$?" >"$T/rc"
ls /dev/shm >"$T/shm.ls"
rm -f /dev/shm/filler
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL timeout -s KILL 10 $PY -c '
import psycopg2
c = psycopg2.connect(application_name="t_out_shm_full"); c.autocommit = True
c.cursor().execute("select 1"); print("RAN")
' >"$T/second.out" 2>"$T/second.err"
echo "second=\$?" >>"$T/rc"
EOF
rc=0
timeout 40 unshare -m --propagation private bash "$T/inner.sh" || rc=$?
assert_eq "$rc" 0 "the namespace's script (90: no tmpfs mount, 91: no filler)"
note "first: $(cat "$T/first.out") $(cat "$T/first.err")"
assert_eq "$(sed -n 1p "$T/rc")" first=0 "the first program's exit status (no crash)"
assert_match "$(cat "$T/first.out")" '^REFUSED pqshim: connection refused: segment .* cannot be created: No space left on device \(/dev/shm is full: the segment needs [0-9]+ bytes' \
	"the first program's error"
grep -q pqshim "$T/shm.ls" && fail "a segment was left in the full /dev/shm: $(cat "$T/shm.ls")"
assert_eq "$(sed -n 2p "$T/rc")" second=0 "the second program's exit status ($(cat "$T/second.err"))"
assert_eq "$(cat "$T/second.out")" RAN "the second program, with room"
