#!/usr/bin/env bash
# t_out_service.sh: a connection named by a service of pg_service.conf
# (`service=NAME` in its conninfo: host, port and dbname in the file) is
# routed like one that spells them out. The policy's primary and replica
# are the bed's two servers (by port); PGSERVICEFILE names a file with
# [pqt_primary] (the primary's socket and port). A psycopg2 program connects
# with "service=pqt_primary", no PGHOST/PGPORT:
#  - read-write: pqshim stat shows its connection with target "primary";
#  - read-only (the flag file exists): it lands on the replica
#    (pg_is_in_recovery() true, the replica's port), target "replica", and
#    the primary has no backend of it.
# (Before: the service's values were not looked at: the connection matched
# no rule ("direct") and stayed on the primary while read-only was on.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

FLAG=$T/read-only.flag
APP=t_out_service
POL=$(ro_policy service "$T/shim.log")
cat >"$T/pg_service.conf" <<EOF
# a comment, and another service first
[pqt_other]
host=/nonexistent
port=1

[pqt_primary]
host=$PQT_SOCKDIR
port=$PQT_PRIMARY_PORT
dbname=pqt
user=postgres
EOF
# probe NAME: connect with service=pqt_primary, print port and recovery,
# stay connected until stdin closes
probe() {
	held_start "$1" env -u PGHOST -u PGPORT -u PGDATABASE -u PGSERVICE \
		PGSERVICEFILE="$T/pg_service.conf" PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PY" -c '
import sys, psycopg2
c = psycopg2.connect("service=pqt_primary"); c.autocommit = True
cur = c.cursor()
cur.execute("select current_setting(%s), pg_is_in_recovery()", ("port",))
port, rec = cur.fetchone()
print("PORT", port, "RECOVERY", rec, flush=True)
print("READY", flush=True)
sys.stdin.read()'
	held_ready "$1"
}
target_of() { jqp "$POL" "[.connections[] | select(.pid == $1) | .target] | join(\",\")"; }

# read-write: the primary, and said so
probe rw
assert_eq "$(grep ^PORT "$T/rw.out")" "PORT $PQT_PRIMARY_PORT RECOVERY False" "read-write: where it ran"
assert_eq "$(target_of "${HELD_PID[rw]}")" primary "read-write: stat's target"
held_end rw 0

# read-only: the replica
touch "$FLAG"
probe ro
assert_eq "$(grep ^PORT "$T/ro.out")" "PORT $PQT_REPLICA_PORT RECOVERY True" "read-only: where it ran"
assert_eq "$(target_of "${HELD_PID[ro]}")" replica "read-only: stat's target"
assert_eq "$(server_backends "$APP")" 0 "read-only: its backends on the primary"
assert_eq "$(server_backends "$APP" replica)" 1 "read-only: its backends on the replica"
held_end ro 0
