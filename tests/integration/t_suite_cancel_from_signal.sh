#!/usr/bin/env bash
# t_suite_cancel_from_signal.sh: PQcancel from a SIGALRM handler (as psql's
# SIGINT handler does) during a long PQexec: 57014 within seconds, the
# connection works afterwards.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/suite_client.c cancel_signal).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_scenario cancel_signal
echo "ok: cancel_signal under max_active = 2: as without the shim, nothing held after"
