#!/usr/bin/env bash
# t_suite_copy_fails_midstream.sh: COPY FROM STDIN that the client ends with
# PQputCopyEnd(errormsg) (57014, no row kept) and COPY TO STDOUT that fails on
# the server after 499 rows (22012): the connection works after each.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/suite_client.c copy_fail).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_scenario copy_fail
echo "ok: copy_fail under max_active = 2: as without the shim, nothing held after"
