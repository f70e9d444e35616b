#!/usr/bin/env bash
# t_suite_cancel_from_thread.sh: PQcancel from another thread during a long
# PQexec (pg_sleep(30)): the query ends with 57014 within seconds and the
# connection works afterwards.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/suite_client.c cancel_thread).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_scenario cancel_thread
echo "ok: cancel_thread under max_active = 2: as without the shim, nothing held after"
