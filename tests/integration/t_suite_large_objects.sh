#!/usr/bin/env bash
# t_suite_large_objects.sh: large objects through PQfn: lo_creat, lo_open,
# lo_write, lo_lseek, lo_read, lo_close in a transaction, lo_import and
# lo_export in another, lo_unlink in autocommit; checked on the server.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/suite_client.c lo).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
suite_scenario lo
echo "ok: lo under max_active = 2: as without the shim, nothing held after"
