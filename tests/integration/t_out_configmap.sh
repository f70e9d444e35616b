#!/usr/bin/env bash
# t_out_configmap.sh: a policy mounted the way Kubernetes mounts a ConfigMap
# (app.ini -> ..data/app.ini, ..data -> ..2026_12_01_a, an update writes a
# new ..2026_12_01_b, renames a new ..data symlink over the old one and
# removes the old directory) is one policy for every program, however it is
# started. The policy names no segment (the name is derived from its path).
# Two pgbench processes (-c 2 each) run BEGIN; log clock_timestamp();
# pg_sleep(0.03); log; COMMIT under max_active = 2: one started with
# `pqshim run -p DIR/app.ini`, one with LD_PRELOAD and PQSHIM_POLICY =
# DIR/app.ini. Then the ConfigMap is updated to max_active = 1.
#  - Both are on one segment (pqshim ls shows one for the policy), and from
#    the SERVER's rows no more than 2 transactions ever overlapped, and 2 did.
#  - After the update each process logs its own reload, none says "cannot
#    open", stat shows max_active 1 and no policy error, and no two
#    transactions that started after that overlapped.
# A program given the relative path (PQSHIM_POLICY=cm/app.ini) that changes
# directory before its first libpq call uses the same policy and segment.
# (Before: `pqshim run` resolved the symlinks and gave the program
# DIR/..2026_12_01_a/app.ini: another derived segment, so 4 at once on the
# server, and after the update that process lost its policy file for good.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

APP=t_out_configmap
LOG=$T/shim.log
CM=$T/cm
mkdir -p "$CM"
# configmap_write NAME MAX_ACTIVE: what the kubelet does on an update
configmap_write() {
	local d=$CM/..2026_12_01_$1
	mkdir "$d"
	printf '[shim]\nlog = %s\n[cap]\nmax_active = %s\nwait_timeout = 25s\n' "$LOG" "$2" >"$d/app.ini"
	chmod 0644 "$d/app.ini"
	ln -s "..2026_12_01_$1" "$CM/..data_tmp"
	mv -T "$CM/..data_tmp" "$CM/..data"
}
configmap_write a 2
ln -s ..data/app.ini "$CM/app.ini"
POL=$CM/app.ini
# the derived segment(s), removed at exit by lib.sh
segs() { "$PQSHIM" ls 2>/dev/null | awk -v d="$CM/" 'index($NF, d) == 1 { print $1 }'; }
at_exit 'segs >>"$T/.segments"'

xact_log cm_log 0.03
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -f "$T/cm_log.sql" -c 2 -j 2 -T 12 \
	>"$T/a.out" 2>"$T/a.err" &
A=$!
bg_track "$A"
PGAPPNAME=$APP LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$POL "$PGBENCH" -n -f "$T/cm_log.sql" \
	-c 2 -j 2 -T 12 >"$T/b.out" 2>"$T/b.err" &
B=$!
bg_track "$B"
rows() { [ "$(sql_primary "select count(*) from cm_log where t1 is not null")" -ge "$1" ]; }
wait_until 10 rows 30 || fail "no transactions logged: $(tail -3 "$T/a.err" "$T/b.err")"
now() { sql_primary "select extract(epoch from clock_timestamp())"; }
sleep 1

nsegs=$(segs | wc -l)
assert_eq "$nsegs" 1 "segments for the ConfigMap's policy ($(segs | tr '\n' ' '))"
environ() { tr '\0' '\n' <"/proc/$1/environ" | sed -n 's/^PQSHIM_POLICY=//p'; }
assert_eq "$(environ "$A")" "$POL" "PQSHIM_POLICY that pqshim run gave pgbench"

note "ConfigMap update to max_active = 1 at $(now)"
logged=$(wc -l <"$LOG")
configmap_write b 1
rm -rf "$CM/..2026_12_01_a"
cap_is() { [ "$(jqp "$POL" .cap.max_active)" = "$1" ]; }
wait_until 5 cap_is 1 || fail "stat never showed max_active 1: $(jqp "$POL" '.cap, .policy')"
seen=$(now)
note "stat shows max_active 1 at $seen"
rc=0
wait "$A" || rc=$?
assert_eq "$rc" 0 "pgbench A exit status (stderr: $(tail -3 "$T/a.err"))"
rc=0
wait "$B" || rc=$?
assert_eq "$rc" 0 "pgbench B exit status (stderr: $(tail -3 "$T/b.err"))"
! grep "cannot open" "$LOG" >&2 || fail "a process lost its policy file"
since() { tail -n "+$((logged + 1))" "$LOG"; }
since | grep -q "^pqshim\[$A\]: policy $POL reloaded" ||
	fail "A (pqshim run) never reloaded $POL after the update: $(since)"
since | grep -q "^pqshim\[$B\]: policy $POL reloaded" ||
	fail "B (LD_PRELOAD) never reloaded $POL after the update: $(since)"

# A relative PQSHIM_POLICY, in a program that changes directory before its
# first libpq call: the same policy (and segment), not "/cm/app.ini".
(cd "$T" && LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=cm/app.ini timeout 20 "$PY" -c '
import os, psycopg2
os.chdir("/")
c = psycopg2.connect(application_name="t_out_configmap_rel"); c.autocommit = True
c.cursor().execute("select 1")
print("RAN")' >"$T/rel.out" 2>"$T/rel.err") || fail "relative policy path: $(cat "$T/rel.err")"
assert_eq "$(cat "$T/rel.out")" RAN "the program with a relative policy path"
assert_eq "$(segs | wc -l)" 1 "segments for the policy, with the relative path too ($(segs | tr '\n' ' '))"

after=$(sql_primary "select count(*) from cm_log where t1 is not null and t0 > to_timestamp($seen)")
assert_le "$(xact_overlap cm_log)" 2 "server side: most transactions at once, max_active = 2 then 1"
assert_eq "$(xact_overlap cm_log)" 2 "server side: the cap of 2 was in use"
assert_ge "$after" 10 "transactions after the update took effect"
assert_le "$(xact_overlap cm_log "$seen")" 1 "server side: most transactions at once after the update"
