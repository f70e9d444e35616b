# shellcheck shell=bash
# tests/integration/probe.sh - scripted psycopg2 clients for the cap tests
# (sourced after lib.sh).  A probe is `py_cap_load.py probe` under the shim,
# fed command lines on a fifo; each command's result is a JSON line "R {...}".
#
#   PROBE_ARGS   extra arguments for the probe (e.g. --suffix)
#   PROBE_WRAP   a command to run the probe through (none needed to drop the
#                test's other fifo write ends: held_start does that)
#   probe_start NAME POLICY APP   start it, wait for READY; its pid in PID
#   probe_end NAME                close its input, expect exit 0
#   psend NAME LINE               send a command; its number in $SEQ
#   presult NAME SEQ SECONDS      wait for that command's result, JSON in $R
#   pending NAME SEQ              true while that command has no result
#   pcmd NAME LINE [SECONDS]      psend + presult
#   r FILTER                      jq -r FILTER on the last result
#   sampler_start PREFIX / sampler_stop   the server's view, without the shim

# shellcheck disable=SC2034 # PFD PRUN PID SAMPLER S: for the tests that source this
LOAD=$PQT_ROOT/tests/clients/py_cap_load.py
declare -A PFD PRUN SEQ_OF
PROBE_ARGS=()
PROBE_WRAP=()

# A probe is held NAME (lib.sh's held_*): PFD and PRUN mirror HELD_FD and HELD_PID.
probe_start() { # NAME POLICY APP
	local name=$1
	held_start "$name" "${PROBE_WRAP[@]}" "$PQSHIM" run -p "$2" -- "$PY" "$LOAD" probe \
		"${PROBE_ARGS[@]}" --app "$3"
	PRUN[$name]=$RUN PFD[$name]=${HELD_FD[$name]}
	held_ready "$name"
	PID=$RUN # pqshim run execs python
}
probe_end() { # NAME: EOF, exit 0
	unset "PFD[$1]"
	held_end "$1" 0
}
psend() { # NAME LINE: send a command; its number in $SEQ
	SEQ_OF[$1]=$((${SEQ_OF[$1]:-0} + 1))
	SEQ=${SEQ_OF[$1]}
	held_send "$1" "$2"
}
presult() { # NAME SEQ SECONDS: the command's result (JSON) in $R
	wait_until "$3" grep -q "^R {\"seq\": $2, " "$T/$1.out" ||
		fail "$1: no result for command $2 (stderr: $(cat "$T/$1.err"))"
	R=$(grep "^R {\"seq\": $2, " "$T/$1.out" | sed 's/^R //')
}
pending() { ! grep -q "^R {\"seq\": $2, " "$T/$1.out"; }
pcmd() { psend "$1" "$2" && presult "$1" "$SEQ" "${3:-10}"; }
r() { jq -r "$1" <<<"$R"; }

# The sampler: `py_cap_load.py sample`, WITHOUT the shim, counts the busy
# backends whose application_name starts with PREFIX every 20 ms.
# sampler_start PREFIX   start it, wait for READY
# sampler_stop           stop it, expect exit 0; its SAMPLE line (JSON) in S
sampler_start() {
	held_start sampler env -u LD_PRELOAD -u PQSHIM_POLICY "$PY" "$LOAD" sample --prefix "$1" \
		--seconds 60 --interval 0.02 --stop-file "$T/stop"
	SAMPLER=$RUN
	held_ready sampler '^READY$' 10
}
sampler_stop() {
	touch "$T/stop"
	held_end sampler 0
	S=$(sed -n 's/^SAMPLE //p' "$T/sampler.out")
}
