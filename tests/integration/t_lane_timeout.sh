#!/usr/bin/env bash
# t_lane_timeout.sh: a lane's wait_timeout fails with 53300 naming the lane;
# a connection keeps its lane; a lane a reload removes sends its
# connections to the default lane at their next transaction.
#  - Policy: no global cap, wait_timeout = 20s; lane "reports"
#    (application_name=t_lanet_rep*, max_active = 1, wait_timeout = 500ms).
#    A psql session of the lane holds its slot inside BEGIN (the server shows
#    it idle in transaction). A psycopg2 probe of the lane: `select 1` fails
#    after 0.5 to 1.0 s with pgcode 53300 and "pqshim: no slot free in lane
#    "reports" after waiting W s (max_active = 1, wait_timeout = 500ms,
#    policy PATH)"; its backend ran nothing. A default-lane probe runs at once.
#    The probe SET application_name before that: it stays in lane "reports"
#    (stat says so, and it timed out).
#  - The policy loses the lane (reload): the probe's next `select 1` runs at
#    once (default lane, no cap) while the holder still holds.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"

POL=$(policy_new lanet '[cap]
wait_timeout = 20s

[lane "reports"]
match = application_name=t_lanet_rep*
max_active = 1
wait_timeout = 500ms
')

probe_start p "$POL" t_lanet_rep_p
pcmd p "a connect c"
assert_eq "$(r .ok)" true "probe: connect: $R"
# SET application_name does not move a connection to another lane
pcmd p "a exec c set application_name = 't_lanet_other'"
assert_eq "$(r .ok)" true "probe: set application_name: $R"
assert_eq "$(server_activity t_lanet_other state)" idle "server: the probe's new application_name"
PGAPPNAME=t_lanet_rep_h psql_hold h "$POL"
psql_feed h "begin;" "select 1;"
assert_eq "$(server_activity t_lanet_rep_h state)" "idle in transaction" "server: the holder"
assert_eq "$(jqp "$POL" '.lanes[] | select(.name == "reports") | "\(.active) \(.max_active)"')" "1 1" \
	"stat: reports lane (active max_active)"
lane_of() { jqp "$POL" ".connections[] | select(.application_name == \"$1\") | .lane"; }
assert_eq "$(lane_of t_lanet_rep_p)" reports "stat: the probe's lane"
assert_eq "$(lane_of t_lanet_rep_h)" reports "stat: the holder's lane"

timed_out_in_lane() { # WHAT
	note "$1: $R"
	assert_eq "$(r .ok)" false "$1: select 1 while the lane's slot is held fails"
	assert_eq "$(r .pgcode)" 53300 "$1: pgcode"
	assert_ge "$(r .elapsed)" 0.5 "$1: seconds before the failure"
	assert_le "$(r .elapsed)" 1.0 "$1: seconds before the failure (the lane's 500ms, not the cap's 20s)"
	assert_match "$(r .msg)" "^pqshim: no slot free in lane \"reports\" after waiting [0-9.]+ s \(max_active = 1, wait_timeout = 500ms, policy $POL\)" \
		"$1: the message names the lane"
	assert_eq "$(server_activity t_lanet_other "state || '|' || query")" "idle|set application_name = 't_lanet_other'" \
		"server: the probe's backend ran nothing"
}
pcmd p "a exec c select 1"
timed_out_in_lane "probe"

probe_start d "$POL" t_lanet_web
pcmd d "a connect c"
pcmd d "a exec c select 2"
assert_eq "$(r .ok) $(r .elapsed | cut -c1-3)" "true 0.0" "default-lane probe runs at once: $R"

assert_eq "$(jqp "$POL" '.lanes[] | select(.name == "reports") | "\(.timeouts) \(.waiting)"')" "1 0" \
	"stat: reports lane (timeouts waiting)"

# the lane goes: its connections go to the default lane at their next transaction
printf '[shim]\nsegment = %s\n[cap]\nwait_timeout = 20s\n' "$(sed -n 's/^segment = //p' "$POL")" >"$POL.new"
chmod 0600 "$POL.new"
mv "$POL.new" "$POL"
# (a process reloads when it next calls libpq: the probe's own tries do)
# (pcmd keeps count of the commands: a loop of our own, bounded, not wait_until)
for try in $(seq 20); do
	pcmd p "a exec c select 3"
	[ "$(r .ok)" = true ] && break
	[ "$try" -lt 20 ] || fail "the probe's connection never left the removed lane: $R"
	sleep 0.2
done
note "the probe ran in the default lane at try $try"
assert_eq "$(jqp "$POL" '[.lanes[].name] | join(" ")')" default "stat: the lanes after the reload"
assert_le "$(r .elapsed)" 0.3 "probe: select 3 in the default lane ran at once"
assert_eq "$(server_activity t_lanet_other "state || '|' || query")" "idle|select 3" "server: the probe ran it"
assert_eq "$(server_activity t_lanet_rep_h state)" "idle in transaction" "server: the holder, still"
psql_feed h "commit;"
held_end h 0
probe_end p
probe_end d
echo "ok: 53300 naming the lane after its own wait_timeout; reload moved the connection"
