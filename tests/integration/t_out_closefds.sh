#!/usr/bin/env bash
# t_out_closefds.sh: the shim never writes into a file of the program's.
# A daemon-like psycopg2 program (tests/clients/py_closefds.py) connects
# (the shim opens its log file, [shim] log = FILE), closes the shim's log
# descriptor as a daemon's close_range does, opens its own data file (which
# gets that same number), writes to it, and runs a statement from another
# thread (cross_thread = warn: the shim logs it). The data file holds the
# program's two lines and nothing else; the shim's log holds the warning.
# Then with log = stderr: a program that closes 0, 1 and 2 (taking 0 and 1
# again with /dev/null) and connects has its connection's socket on
# descriptor 2; after the shim's warning its next statement still runs.
# (Before: the shim kept writing to the number it had opened: its warning
# went into the program's data file; and with log = stderr into the
# connection's socket: "invalid frontend message type 112" on the server,
# the session ended.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

LOG=$T/shim.log
POL=$(policy_new closefds "log = $LOG
[cap]
max_active = 2
")
rc=0
timeout 20 "$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/py_closefds.py" log "$LOG" "$T/data" \
	>"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 0 "the program's exit status ($(cat "$T/err"))"
assert_match "$(cat "$T/out")" '^REUSED [0-9]+$' "the data file took the log's number"
assert_eq "$(cat "$T/data")" "the program's own data
more of it" "the program's data file"
grep -q "is used by thread" "$LOG" || fail "the warning is not in the shim's log: $(cat "$LOG")"

# log = stderr, and descriptor 2 is now the connection's socket
POL2=$(policy_new closefds2 "[cap]
max_active = 2
")
rc=0
timeout 20 "$PQSHIM" run -p "$POL2" -- "$PY" "$PQT_ROOT/tests/clients/py_closefds.py" stderr "$T/out2" \
	2>"$T/err2" || rc=$?
assert_eq "$rc" 0 "the second program's exit status ($(cat "$T/err2"))"
assert_eq "$(sed -n 1p "$T/out2")" "SOCKET 2" "the connection's descriptor"
assert_eq "$(sed -n 2p "$T/out2")" "LAST 3" "the statement after the shim's warning"
