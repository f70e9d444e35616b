#!/usr/bin/env bash
# t_suite_terminated_then_used.sh: a connection whose backend was ended from
# outside (pg_terminate_backend, as a failover or an admin does) while idle
# is used again: the statement fails (PQexec, and PQsendQuery +
# PQgetResult), PQstatus says CONNECTION_BAD, PQreset brings it back; the
# same inside a transaction. No slot stays with the dead backend.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/suite_client.c terminated).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_scenario terminated
echo "ok: terminated under max_active = 2: as without the shim, nothing held after"
