# shellcheck shell=bash
# tests/integration/probe.sh - scripted psycopg2 clients for the cap tests
# (sourced after lib.sh).  A probe is `py_cap_load.py probe` under the shim,
# fed command lines on a fifo; each command's result is a JSON line "R {...}".
#
#   PROBE_ARGS   extra arguments for the probe (e.g. --suffix)
#   PROBE_WRAP   a command to run the probe through (e.g. `clean`, which
#                closes the test's other fifo write ends first)
#   probe_start NAME POLICY APP   start it, wait for READY; its pid in PID
#   probe_end NAME                close its input, expect exit 0
#   psend NAME LINE               send a command; its number in $SEQ
#   presult NAME SEQ SECONDS      wait for that command's result, JSON in $R
#   pending NAME SEQ              true while that command has no result
#   pcmd NAME LINE [SECONDS]      psend + presult
#   r FILTER                      jq -r FILTER on the last result

LOAD=$PQT_ROOT/tests/clients/py_cap_load.py
declare -A PFD PRUN SEQ_OF
PROBE_ARGS=()
PROBE_WRAP=()

probe_start() { # NAME POLICY APP
	local name=$1 fd
	mkfifo "$T/$name.in"
	"${PROBE_WRAP[@]}" "$PQSHIM" run -p "$2" -- "$PY" "$LOAD" probe "${PROBE_ARGS[@]}" --app "$3" \
		<"$T/$name.in" >"$T/$name.out" 2>"$T/$name.err" &
	PRUN[$name]=$!
	bg_track "$!"
	exec {fd}>"$T/$name.in"
	PFD[$name]=$fd
	ready() { grep -qx READY "$T/$name.out" || ! kill -0 "${PRUN[$name]}" 2>/dev/null; }
	wait_until 20 ready || fail "$name: probe never READY"
	grep -qx READY "$T/$name.out" || fail "$name: probe failed: $(cat "$T/$name.err")"
	PID=${PRUN[$name]} # pqshim run execs python
}
probe_end() { # NAME: EOF, exit 0
	local rc=0 fd=${PFD[$1]}
	exec {fd}>&-
	unset "PFD[$1]"
	wait "${PRUN[$1]}" || rc=$?
	assert_eq "$rc" 0 "$1: probe exit status (stderr: $(cat "$T/$1.err"))"
}
psend() { # NAME LINE: send a command; its number in $SEQ
	SEQ_OF[$1]=$((${SEQ_OF[$1]:-0} + 1))
	SEQ=${SEQ_OF[$1]}
	printf '%s\n' "$2" >&"${PFD[$1]}"
}
presult() { # NAME SEQ SECONDS: the command's result (JSON) in $R
	wait_until "$3" grep -q "^R {\"seq\": $2, " "$T/$1.out" ||
		fail "$1: no result for command $2 (stderr: $(cat "$T/$1.err"))"
	R=$(grep "^R {\"seq\": $2, " "$T/$1.out" | sed 's/^R //')
}
pending() { ! grep -q "^R {\"seq\": $2, " "$T/$1.out"; }
pcmd() { psend "$1" "$2" && presult "$1" "$SEQ" "${3:-10}"; }
r() { jq -r "$1" <<<"$R"; }
