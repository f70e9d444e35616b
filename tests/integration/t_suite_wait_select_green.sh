#!/usr/bin/env bash
# t_suite_wait_select_green.sh: psycopg2's green mode (extras.wait_select as
# the wait callback, so psycopg2 drives libpq asynchronously): two
# connections of one thread writing in turns, a named (server-side) cursor,
# and a long query interrupted by SIGINT, which wait_select turns into a
# cancel (QueryCanceledError); the connection works afterwards.
# Under [cap] max_active = 2 with tracking on; the same scenario without the
# shim first, as the reference (tests/integration/suite.sh,
# tests/clients/py_suite.py wait_select).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=suite.sh
. "$(dirname "$0")/suite.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
SUITE_CMD=("$PY" "$PQT_ROOT/tests/clients/py_suite.py")
suite_scenario wait_select
echo "ok: psycopg2 green mode under max_active = 2: as without the shim, nothing held after"
