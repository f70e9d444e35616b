#!/usr/bin/env bash
# t_clane_stopped_excl.sh: scope = cluster, an exclusive lane's grant to a
# waiter stopped (SIGSTOP) before it claims it is taken back by its host's
# leader, so that the other host, which cannot see it, is not held back.
# Two simulated hosts h1, h2 (max_active = 8; lane "migrations",
# application_name=migrate-*, exclusive; wait_timeout = 8s). On h1: a psql
# session A (it leads the host) inside a transaction, an idle process (the
# host's standby), then the migration M (tests/clients/py_lane_load.py, one
# 300 ms transaction), which queues behind A and is stopped (state T). h2
# loops 30 ms transactions (3 threads). A commits: the cluster's gate goes to
# h1 and the exclusive grant to the stopped M. Every transaction writes the
# server's now() (its start) and clock_timestamp() (its end) into a table on
# the primary: from those rows h2 runs again within 1.5 s of A's end while M
# is still stopped (and has no row); after SIGCONT M runs, and nothing of
# either host overlaps it. (Before: h2 ran nothing from M's queueing until M
# was continued and done: the grant held every host.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

cluster_bed clanest 8 8s '[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
wait_timeout = 8s'
host_up h1
host_up h2

# A: psql under the shim on h1, the host's first process (its leader)
PGAPPNAME=web-h1-A held_start A on_host h1 "$PQSHIM" run -p "$POL" -- "$PSQL" -X -A -t -q \
	-v ON_ERROR_STOP=1
psql_feed A "begin;" "insert into $TBL values ('A', now(), now(), null);"
idle_lease h1 "$POL" idle-h1 1 0.01          # the host's standby
host_load h2 web2 "$POL" $TBL web-h2 --threads 3 --seconds 7 --sleep 0.03
host_load h1 mig "$POL" $TBL migrate-1 --count 1 --sleep 0.3
m_waits() { [ "$(host_stat h1 "$POL" | jq -r '.lanes[] | select(.name == "migrations") | .waiting')" = 1 ]; }
wait_until 10 m_waits || fail "the migration did not queue on h1: $(cat "$T/mig.err")"
MPID=$(pgrep -P "${LANE_PID[mig]}" | head -n 1)   # python, under timeout
[ -n "$MPID" ] || fail "no migration process"
kill -STOP "$MPID"
stopped() { [ "$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$MPID/stat" 2>/dev/null)" = T ]; }
wait_until 5 stopped || fail "the migration did not stop"

psql_feed A "update $TBL set t1 = clock_timestamp() where app = 'A';" "commit;"
sleep 3                                      # M stays stopped, its grant revoked
stopped || fail "the migration no longer stopped"
assert_eq "$(q "select count(*) from $TBL where app = 'migrate-1'")" 0 "server: nothing from the stopped migration"
A="(select t1 from $TBL where app = 'A')"
first=$(q "select round(extract(epoch from min(t0) - $A) * 1000) from $TBL where app = 'web-h2' and t0 > $A")
note "h2's first transaction after A's end: ${first:-none} ms"
assert_ge "$(q "select count(*) from $TBL where app = 'web-h2' and t0 > $A and t0 < $A + interval '2.5 s'")" 10 \
	"server: h2 transactions in the 2.5 s after A's end, with the exclusive grant's waiter stopped"
assert_le "${first:-99999}" 1500 "server: ms from A's end to h2's next transaction"
kill -CONT "$MPID"
lane_wait mig web2
kill "$IDLE"                                 # it holds A's fifo open too (started after it)
wait "$IDLE" 2>/dev/null || true
held_end A 0

alone_and_resumed $TBL migrate-1 web-h2        # after SIGCONT
echo "ok: h2 ran again ${first} ms after the exclusive grant went to a stopped waiter on h1"
