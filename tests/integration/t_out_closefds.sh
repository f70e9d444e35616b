#!/usr/bin/env bash
# t_out_closefds.sh: the shim never writes into a file of the program's.
# A daemon-like psycopg2 program (tests/clients/py_closefds.py) connects
# (the shim opens its log file, [shim] log = FILE), closes the shim's log
# descriptor as a daemon's close_range does, opens its own data file (which
# gets that same number), writes to it, and runs a statement from another
# thread (cross_thread = warn: the shim logs it). The data file holds the
# program's two lines and nothing else; the shim's log holds the warning.
# (Before: the shim kept writing to the number it had opened: its warning
# went into the program's data file.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

LOG=$T/shim.log
POL=$(policy_new closefds "log = $LOG
[cap]
max_active = 2
")
rc=0
timeout 20 "$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/py_closefds.py" "$LOG" "$T/data" \
	>"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 0 "the program's exit status ($(cat "$T/err"))"
assert_match "$(cat "$T/out")" '^REUSED [0-9]+$' "the data file took the log's number"
assert_eq "$(cat "$T/data")" "the program's own data
more of it" "the program's data file"
grep -q "is used by thread" "$LOG" || fail "the warning is not in the shim's log: $(cat "$LOG")"
