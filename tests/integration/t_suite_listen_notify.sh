#!/usr/bin/env bash
# t_suite_listen_notify.sh: LISTEN on one connection, NOTIFY on another of
# the same thread, out of and inside a transaction (delivered at commit, not
# before), read with PQconsumeInput + PQnotifies.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/suite_client.c notify).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_scenario notify
echo "ok: notify under max_active = 2: as without the shim, nothing held after"
