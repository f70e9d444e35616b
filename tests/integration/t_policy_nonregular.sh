#!/usr/bin/env bash
# t_policy_nonregular.sh: a policy that is not a regular file never hangs the
# host or the tool (issue 17 point 4). With PQSHIM_POLICY=/dev/zero, a FIFO
# (no writer) or a directory, `psql -c 'select 1'` under the shim ends within
# 5 s, and fails cleanly as on_error = fail-closed says: exit status 2, a
# `pqshim:` error naming the file and "not a regular file" (or "a
# directory"), and no session of it on the server. `pqshim check` on each
# exits 1 at once with the same reason; `pqshim stat -p /dev/zero` ends
# within 5 s (it used to spin at 100% CPU).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
APP=t_policy_nonregular
mkfifo "$T/fifo.ini"
mkdir "$T/dir.ini"
# stat -p derives a segment name from these paths: remove what it leaves.
at_exit 'rm -f /dev/shm/*p-zero-* /dev/shm/*p-fifo-* /dev/shm/*p-dir-*'
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

for f in /dev/zero "$T/fifo.ini" "$T/dir.ini"; do
	why="not a regular file"
	[ -d "$f" ] && why="a directory, not a policy file"
	t0=${EPOCHREALTIME/./}
	rc=0
	PGAPPNAME=$APP LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY=$f timeout -k 1 5 \
		"$PSQL" -X -c 'select 1' >"$T/psql.out" 2>"$T/psql.err" </dev/null || rc=$?
	ms=$(ms_since "$t0")
	note "$f: psql exit $rc after $ms ms: $(head -c 300 "$T/psql.err")"
	[ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "$f: psql hung (killed by timeout after $ms ms)"
	assert_eq "$rc" 2 "$f: psql's exit status (connection refused, fail-closed)"
	assert_match "$(cat "$T/psql.err")" "pqshim: .*$f: refused: $why" "$f: psql's error"
	assert_eq "$(server_backends "$APP")" 0 "$f: sessions of psql on the server"

	rc=0
	timeout -k 1 5 "$PQSHIM" check "$f" >"$T/check.out" 2>"$T/check.err" || rc=$?
	assert_eq "$rc" 1 "$f: pqshim check's exit status"
	assert_eq "$(head -1 "$T/check.err")" "$f: refused: $why" "$f: pqshim check's first line"
	grep -q "rename it over the old one" "$T/check.err" ||
		fail "$f: pqshim check does not say how to edit safely: $(cat "$T/check.err")"
done

t0=${EPOCHREALTIME/./}
rc=0
timeout -k 1 5 "$PQSHIM" stat -p /dev/zero >"$T/stat.out" 2>"$T/stat.err" || rc=$?
ms=$(ms_since "$t0")
note "pqshim stat -p /dev/zero: exit $rc after $ms ms"
[ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "pqshim stat -p /dev/zero hung (killed after $ms ms)"
