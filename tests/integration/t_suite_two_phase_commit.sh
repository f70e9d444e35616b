#!/usr/bin/env bash
# t_suite_two_phase_commit.sh: psycopg2's two-phase commit: tpc_begin,
# tpc_prepare, tpc_commit; tpc_rollback of a prepared transaction;
# tpc_recover, and a transaction prepared on one connection committed from
# another; the rows and pg_prepared_xacts checked. The server is the test's
# own (suite.sh private_start, max_prepared_transactions = 10).
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/clients/py_suite.py tpc).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
private_start "-c max_prepared_transactions=10"
SUITE_CMD=("$PY" "$PQT_ROOT/tests/clients/py_suite.py")
suite_scenario tpc "$PRIV_CONNINFO"
echo "ok: psycopg2 tpc_* under max_active = 2: as without the shim, nothing held after"
