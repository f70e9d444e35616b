#!/usr/bin/env bash
# t_clane_standby_gone.sh: scope = cluster, an exclusive lane's migration run
# by the host's standby, which then ends: the host's work resumes after it.
# Two simulated hosts h1, h2 (max_active = 8; lane "migrations",
# application_name=migrate-*, exclusive; wait_timeout = 5s). On h1 a web
# process (3 threads of 30 ms transactions for 5 s, tests/clients/
# py_lane_load.py) starts first and leads the host; a second process, the
# migration (psql), starts 1 s later (so it is the host's standby), runs one
# 300 ms transaction in the exclusive lane at once and exits right after its
# COMMIT. h2 runs the same web load.
# Every transaction writes the server's now() (its start) and
# clock_timestamp() (its end) into a table on the primary: from those rows
# nothing of either host overlapped the migration, and both hosts' web work
# ran after it (resumed). (Before: the standby, gone, had last published
# "S held exclusive", and h1's leader waited for it to let S go before
# taking the gate shared again: h1 admitted nothing more, its waiters failed
# 53300 at their wait_timeout.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

cluster_bed clanesg 8 5s '[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
wait_timeout = 5s'
host_up h1
host_up h2

host_load h1 web1 "$POL" $TBL web-h1 --threads 3 --seconds 5 --sleep 0.03
host_load h2 web2 "$POL" $TBL web-h2 --threads 3 --seconds 5 --sleep 0.03
ready() { grep -q READY "$T/$1.out"; }
wait_until 10 ready web1 || fail "web1 did not connect: $(cat "$T/web1.err")"
sleep 1
# psql, as a migration tool would: it connects, runs its one transaction at
# once and exits right after its COMMIT
(PGAPPNAME=migrate-1 PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h1 timeout 30 "$PSQL" -X -q \
	-v ON_ERROR_STOP=1 -c "begin" -c "select pg_sleep(0.3)" \
	-c "insert into $TBL values ('migrate-1', now(), now(), clock_timestamp())" -c "commit") \
	>"$T/mig.out" 2>"$T/mig.err" &
bg_track "$!"
LANE_PID[mig]=$!
lane_wait mig web1 web2

note "rows: $(q "select string_agg(app || ' ' || n, ', ') from (select app, count(*) n from $TBL group by app) s")"
alone_and_resumed $TBL migrate-1 web-h1 web-h2
echo "ok: both hosts resumed after the migration its host's standby ran"
