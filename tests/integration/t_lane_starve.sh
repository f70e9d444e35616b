#!/usr/bin/env bash
# t_lane_starve.sh: priority is strict, and bounded by wait_timeout: under a
# constant load of a higher priority a waiter of a lower one is never
# served, and fails at its deadline with 53300 naming its lane.
#  - Policy: max_active = 1, wait_timeout = 1s (the default lane's); lane
#    "web" (application_name=t_lanes_hi*, priority = 10, wait_timeout = 30s).
#    Two processes of 3 web threads each loop 10 ms transactions for 4 s
#    (tests/clients/py_lane_load.py: the server's now() and clock_timestamp()
#    per transaction into a table): 5 web waiters queue behind the running
#    one at every moment.
#  - A default-lane psycopg2 probe starts `select 1` in the middle of it: it
#    fails after 1.0 to 1.5 s (its wait_timeout, not later) with pgcode
#    53300 and "pqshim: no slot free in lane "default" after waiting W s
#    (max_active = 1, wait_timeout = 1s, policy PATH)"; its backend ran
#    nothing; the server's rows show web transactions starting all through
#    its wait (the load was there), and never two at once.
#  - Once the load is over the probe's next `select 1` runs at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
TBL=t_lanes
lane_table $TBL
POL=$(policy_new lanes '[cap]
max_active = 1
wait_timeout = 1s

[lane "web"]
match = application_name=t_lanes_hi*
priority = 10
wait_timeout = 30s
')

probe_start p "$POL" t_lanes_lo
pcmd p "a connect c"
assert_eq "$(r .ok)" true "probe: connect: $R"
lane_load hi1 "$POL" $TBL t_lanes_hi --threads 3 --seconds 4 --sleep 0.01
lane_load hi2 "$POL" $TBL t_lanes_hi --threads 3 --seconds 4 --sleep 0.01
web_runs() { [ "$(q "select count(*) from $TBL")" -ge 20 ]; }
wait_until 20 web_runs || fail "the web load never ran 20 transactions"
asked=$(q "select clock_timestamp()")
pcmd p "a exec c select 1" 10
ended=$(q "select clock_timestamp()")
note "probe: $R"
assert_eq "$(r .ok)" false "probe: select 1 under the web load fails"
assert_eq "$(r .pgcode)" 53300 "probe: pgcode"
assert_ge "$(r .elapsed)" 1.0 "probe: seconds before the failure"
assert_le "$(r .elapsed)" 1.5 "probe: seconds before the failure (its 1s wait_timeout, at its deadline)"
assert_match "$(r .msg)" "^pqshim: no slot free in lane \"default\" after waiting [0-9.]+ s \(max_active = 1, wait_timeout = 1s, policy $POL\)" \
	"probe: the message names its lane"
assert_eq "$(server_activity t_lanes_lo "state || '|' || query")" "idle|" \
	"server: the probe's backend ran nothing"
lane_wait hi1 hi2
during=$(q "select count(*) from $TBL where t0 > '$asked' and t0 < '$ended'")
note "server: $during web transactions started while the probe waited"
assert_ge "$during" 20 "server: web transactions during the probe's wait (a constant load)"
gap=$(q "select coalesce(max(g), 0) from (select extract(epoch from t0 - lag(t1) over (order by t0)) g
	from $TBL where t0 > '$asked' and t0 < '$ended') x")
assert_le "$gap" 0.5 "server: the longest pause between web transactions in the probe's wait (s)"
assert_eq "$(q "select count(*) from $TBL a, $TBL b where a.ctid < b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 0 \
	"server: pairs of transactions that overlapped (max_active = 1)"
assert_eq "$(jqp "$POL" '.lanes[] | select(.name == "default") | "\(.timeouts) \(.waiting)"')" "1 0" \
	"stat: default lane (timeouts waiting)"
pcmd p "a exec c select 1"
assert_eq "$(r .ok)" true "probe: select 1 once the load is over: $R"
assert_le "$(r .elapsed)" 0.3 "probe: ... at once"
probe_end p
echo "ok: the default lane's waiter failed at its 1s deadline under priority 10's load ($during web transactions meanwhile)"
