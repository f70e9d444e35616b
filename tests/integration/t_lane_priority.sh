#!/usr/bin/env bash
# t_lane_priority.sh: waiters of a higher priority go first.
# Policy: max_active = 1; lane "web" (application_name=t_lanep_hi*,
# priority = 10); the rest is the default lane (priority 0). 3 threads of
# each (tests/clients/py_lane_load.py) loop 10 ms transactions for 5 s,
# each writing the server's now() and clock_timestamp() into a table. From
# those rows: the web lane completed at least 3 times the transactions of
# the default lane, and no two transactions overlapped (the cap held).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=lane_lib.sh
. "$(dirname "$0")/lane_lib.sh"
TBL=t_lanep
lane_table $TBL
POL=$(policy_new lanep '[cap]
max_active = 1
wait_timeout = 30s

[lane "web"]
match = application_name=t_lanep_hi*
priority = 10
')
lane_load hi "$POL" $TBL t_lanep_hi --threads 3 --seconds 5 --sleep 0.01
lane_load lo "$POL" $TBL t_lanep_lo --threads 3 --seconds 5 --sleep 0.01
lane_wait hi lo
hi=$(q "select count(*) from $TBL where app = 't_lanep_hi'")
lo=$(q "select count(*) from $TBL where app = 't_lanep_lo'")
note "server: web (priority 10) $hi, default $lo transactions"
assert_ge "$hi" 100 "server: web transactions"
assert_ge "$hi" "$((3 * lo))" "server: web transactions (>= 3 x the default lane's $lo)"
assert_eq "$(q "select count(*) from $TBL a, $TBL b where a.ctid < b.ctid and a.t0 < b.t1 and a.t1 > b.t0")" 0 \
	"server: pairs of transactions that overlapped (max_active = 1)"
echo "ok: priority 10: $hi transactions, default: $lo"
