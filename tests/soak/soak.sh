#!/usr/bin/env bash
# tests/soak/soak.sh (make soak): the cap under faults for a few minutes -
# see tests/soak/soak.py.  Starts its own primary and replica (like a test
# run alone), prints the soak's report, and exits 1 if it shows a hang, a
# crash, a slot left held, a stall over 1 s with work waiting, a wait
# that got its slot past wait_timeout + 50 ms, or a sample with more busy on
# the server than the cap in force that no kill explains.  SOAK_KILLS (1000) and
# SOAK_SEED (17) change the run.
set -euo pipefail
. "$(dirname "$0")/../integration/lib.sh"

POL0=$(policy_new seg)
SOAK_SEGMENT=$(sed -n 's/^segment = //p' "$POL0")
export SOAK_SEGMENT
"$PY" "$PQT_ROOT/tests/soak/soak.py" | tee "$T/report.txt"
R=$(sed -n 's/^SOAK //p' "$T/report.txt")
ok=1
chk() { # WHAT JQ-TEST
	if [ "$(jq "$2" <<<"$R")" != true ]; then
		echo "soak: FAILED: $1" >&2
		ok=0
	fi
}
chk "hangs" '.hangs | length == 0'
chk "crashes" '.crashes | length == 0'
chk "slots or records left after" '.left_after == {"active": 0, "waiting": 0, "processes": 0, "connections": 0}'
chk "a stall over 1 s with work waiting" '.analysis.stall_max <= 1.0'
chk "a wait that got its slot past wait_timeout + 50 ms" '.analysis.wait_ok_over_timeout == 0'
chk "more busy on the server than the cap in force, and no killed client's statement among them" \
	'.analysis.samples_over_cap_in_force == .analysis.over_cap_blamed_on_kills'
[ -n "${SOAK_KEEP:-}" ] && cp -r "$T" "$SOAK_KEEP"
[ "$ok" = 1 ] && echo "soak: passed"
[ "$ok" = 1 ]
