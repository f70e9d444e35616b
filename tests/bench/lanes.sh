#!/usr/bin/env bash
# tests/bench/lanes.sh - what lanes cost per transaction: client-side
# instructions (callgrind, tests/bench/overhead.sh) of `pgbench -S` under a
# cap without lanes, the same cap with lanes (pgbench in the default lane,
# and in a lane of its own), and with an exclusive lane that pgbench is not
# in.  Starts its own throw-away server (pgbed.sh).  Usage: lanes.sh [N]
# [ROUNDS] [COMMIT]; with COMMIT (e.g. b5a5509, before the lane word) the
# same contenders also run on that commit's build, in the same rounds
# ("before:" rows).  Prints overhead.sh's Markdown table.  Measures; never
# fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../integration/pgbed.sh
. "$root/tests/integration/pgbed.sh"
unset LD_PRELOAD PQSHIM_POLICY PGOPTIONS PGSERVICE
work=$(mktemp -d /tmp/pqshim-lanes-bench.XXXXXX)
chmod 0755 "$work"
trap 'pgbed_stop >/dev/null 2>&1; rm -f /dev/shm/pqshim.$(id -u).lanesb-$$-*; rm -rf "$work"' EXIT
pgbed_start >&2
/usr/lib/postgresql/15/bin/pgbench -i -q >/dev/null 2>&1
pol() { # NAME TEXT
	(umask 077 && printf '[shim]\nsegment = lanesb-%s-%s\n[cap]\nmax_active = 4\n%s' "$$" "$1" "$2" >"$work/$1.ini")
	# older than the reload's settling time (as run.sh's): a file this new
	# is loaded again at the first tick, inside a measured run
	touch -d '1 minute ago' "$work/$1.ini"
	echo "$work/$1.ini"
}
cap=$(pol cap "")
dflt=$(pol dflt '[lane "reports"]
match = application_name=report*
max_active = 1
')
own=$(pol own '[lane "bench"]
match = program=pgbench
max_active = 2
priority = 10
')
excl=$(pol excl '[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
')
contenders="cap=$cap lanes,default-lane=$dflt lanes,own-lane=$own exclusive-lane-defined=$excl"
if [ -n "${3:-}" ]; then
	# the same policies on their own segments (another layout may be older)
	mkdir "$work/before"
	git -C "$root" archive "$3" | tar -x -C "$work/before"
	make -C "$work/before" build/libpqshim.so >/dev/null 2>&1
	old=$work/before/build/libpqshim.so
	for p in cap dflt own excl; do sed "s/lanesb-$$-$p/lanesb-$$-b$p/" "$work/$p.ini" >"$work/b$p.ini"; done
	chmod 0600 "$work"/b*.ini
	touch -d '1 minute ago' "$work"/b*.ini
	contenders="before:cap=$work/bcap.ini@$old $contenders"
	contenders="$contenders before:default-lane=$work/bdflt.ini@$old"
	contenders="$contenders before:own-lane=$work/bown.ini@$old"
fi
OVERHEAD_CONTENDERS="$contenders" bash "$root/tests/bench/overhead.sh" "${1:-1000}" simple "${2:-3}"
