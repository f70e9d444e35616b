#!/usr/bin/env bash
# t_lane_crash.sh: an exclusive lane's holder killed with SIGKILL mid-
# transaction holds nothing back: the work it held back goes on.
# Lane "migrations" (exclusive). A psql of the lane holds its slot inside
# BEGIN; a default-lane probe's `select 1` waits (the server shows its
# backend ran nothing). kill -9 of psql: the probe's statement runs within
# 2 s (the waiters reap dead processes every 200 ms), and stat shows the
# lane with nothing active.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
POL=$(policy_new lanek '[cap]
wait_timeout = 20s

[lane "migrations"]
match = application_name=migrate-*
exclusive = yes
')
PGAPPNAME=migrate-k psql_hold h "$POL"
psql_feed h "begin;" "select 1;"
assert_eq "$(server_activity migrate-k state)" "idle in transaction" "server: the exclusive holder"
probe_start p "$POL" t_lanek_p
pcmd p "a connect c"
psend p "a exec c select 1"
seq1=$SEQ
sleep 0.5
pending p "$seq1" || fail "the probe ran beside the exclusive transaction: $R"
assert_eq "$(server_activity t_lanek_p "state || '|' || query")" "idle|" "server: the probe sent nothing"
kill -9 "${HELD_PID[h]}"
presult p "$seq1" 5
assert_eq "$(r .ok)" true "probe after the holder's death: $R"
assert_le "$(r .elapsed)" 2.5 "probe: seconds waited in all (0.5 before the kill)"
assert_eq "$(jqp "$POL" '.lanes[] | select(.name == "migrations") | "\(.active) \(.waiting)"')" "0 0" \
	"stat: the migrations lane after the death"
pcmd p "a exec c select 2"
assert_le "$(r .elapsed)" 0.3 "probe: the next statement at once"
probe_end p
echo "ok: a killed exclusive holder held nothing back"
