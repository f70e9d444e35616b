#!/usr/bin/env bash
# t_robust_migration_slot.sh - the shim's own statements when a connection
# moves (session carry-over) run inside the connection's slot.
#  max_active = 1, on_switch = migrate.  Probe X (psycopg2) sets work_mem
#  on its connection; probe Y then holds the only slot in a transaction.
#  The flag file appears; X's next statement must first wait for the slot
#  (stat: waiting) and only then move: while it waits, the replica has run
#  nothing for X (no carried set_config) and the primary nothing new.
#  When Y commits, X's statement runs on the replica, with work_mem carried.
#  Before the fix, the move (a connect, a query of the old session's
#  settings, set_config on the new one) ran before the wait, without a slot:
#  the servers saw X's statements while Y held the only slot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/probe.sh"

FLAG=$T/read-only.flag
POL=$(ro_policy mig "$T/shim.log" "on_switch = migrate")
printf '\n[cap]\nmax_active = 1\nwait_timeout = 10s\n' >>"$POL"
probe_start x "$POL" t_robust_mig_x
pcmd x "a connect c"
pcmd x "a exec c set work_mem = '7MB'"
assert_eq "$(r .ok)" true "x: set work_mem: $R"
probe_start y "$POL" t_robust_mig_y
pcmd y "a connect c"
pcmd y "a exec c begin"
pcmd y "a exec c select 1"
assert_eq "$(jqp "$POL" .cap.active)" 1 "stat: y holds the slot"
touch "$FLAG"
wait_until 5 ro_noticed "$T/shim.log" on 2 || fail "the probes never noticed the flag: $(cat "$T/shim.log")"
x_primary_q() { sql_primary "select query from pg_stat_activity where application_name = 't_robust_mig_x'"; }
assert_eq "$(x_primary_q)" "set work_mem = '7MB'" "primary: x's last statement before the switch"
psend x "a exec c select current_setting('work_mem'), pg_is_in_recovery()"
XS=$SEQ
queued() { [ "$(jqp "$POL" .cap.waiting)" = 1 ]; }
wait_until 5 queued || fail "x never queued for the slot: $(jqp "$POL" .cap)"
sleep 0.5
pending x "$XS" || fail "x ran while y held the only slot: $(grep "seq\": $XS," "$T/x.out")"
x_replica_q() { sql_replica "select coalesce(string_agg(query, ' | '), '') from pg_stat_activity
	where application_name = 't_robust_mig_x' and query <> ''"; }
assert_eq "$(x_replica_q)" "" "replica: statements run for x while y held the only slot"
case "$(x_primary_q)" in
"set work_mem = '7MB'" | "") ;; # (or its idle backend was ended by the drainer)
*) fail "primary: statements run for x while y held the only slot: $(x_primary_q)" ;;
esac
pcmd y "a exec c commit"
presult x "$XS" 10
assert_eq "$(r .ok) $(r '.rows | tojson')" 'true [["7MB",true]]' "x: its statement, moved, with work_mem carried: $R"
probe_end y   # first: y inherited the write end of x's fifo
probe_end x
