#!/usr/bin/env bash
# t_py_fork.sh: psycopg2 in a forking program (os.fork, then multiprocessing
# with the "fork" start method). The parent opens a connection and forks;
# each child leaves the inherited connection alone and opens its own. Checks
# while everything is held open: the server sees parent + children; `pqshim
# stat` lists every child as its own process (its own pid, ppid = the parent)
# with its own live connection (opener tid = the child's pid, exact counts),
# never the parent's connection as a live connection of the child (only, if
# listed at all, as an inherited, unused record); the parent's record keeps
# its counts. After exit: data present, records gone, totals exact (the
# children's _exit does not close the inherited connection: closes = PQfinish
# calls = connects).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

C=3 # children
K=5 # INSERTs per process

run_mode() { # MODE
	local mode=$1 POL APP RUN PID kids kid n kid_list
	POL=$(policy_new "py_fork_$mode")
	APP=t_py_fork_$mode
	held_start "$mode" "$PQSHIM" run -p "$POL" -- "$PY" "$PQT_ROOT/tests/clients/py_fork.py" \
		--app "$APP" --mode "$mode" --children "$C" --stmts "$K"
	held_ready "$mode"
	PID=$(awk '$1 == "PID" { print $2 }' "$T/$mode.out")
	kids=$(sed -n 's/^CHILD //p' "$T/$mode.out" | jq -r .pid | sort -n | tr '\n' ' ')
	read -r -a kid_list <<<"$kids"
	assert_eq "${#kid_list[@]}" "$C" "$mode: CHILD lines"

	# the server: one backend for the parent, one per child
	assert_eq "$(server_backends "$APP")" "$((C + 1))" "$mode: backends of $APP"

	stat_json "$POL" >"$T/$mode.json"
	q() { jq -r "$1" "$T/$mode.json"; }

	# the parent: one process record, one live connection, its counts
	# (CREATE, DELETE, K INSERTs, SELECT count(*) so far)
	assert_eq "$(q "[.processes[] | select(.pid == $PID)] | length")" 1 \
		"$mode: process records of the parent"
	assert_match "$(q ".processes[] | select(.pid == $PID) | .program")" \
		'^python3(\.[0-9]+)?$' "$mode: parent program"
	assert_eq "$(q ".processes[] | select(.pid == $PID) | .inherited_connections")" 0 \
		"$mode: parent inherited_connections"
	assert_eq "$(q "[.connections[] | select(.pid == $PID)] | length")" 1 \
		"$mode: connection records of the parent"
	assert_eq "$(q ".connections[] | select(.pid == $PID) |
		[.tid, .inherited, .state, .queries, .xacts] | map(tostring) | join(\" \")")" \
		"$PID false idle $((K + 3)) $((K + 3))" \
		"$mode: parent's connection: tid inherited state queries xacts"

	# the processes listed are exactly the parent and its children
	assert_eq "$(q "[.processes[].pid] | sort | map(tostring) | join(\" \")") " \
		"$(printf '%s\n' "$PID" "${kid_list[@]}" | sort -n | tr '\n' ' ')" "$mode: pids listed"

	for kid in "${kid_list[@]}"; do
		assert_eq "$(q ".processes[] | select(.pid == $kid) | .ppid")" "$PID" \
			"$mode: child $kid: ppid"
		assert_match "$(q ".processes[] | select(.pid == $kid) | .program")" \
			'^python3(\.[0-9]+)?$' "$mode: child $kid: program"
		# its own, live connection: opened by its only thread, K statements
		assert_eq "$(q "[.connections[] | select(.pid == $kid and .inherited == false)] |
			map([.tid, .state, .status, .queries, .xacts, .cross_thread_uses] |
			map(tostring) | join(\" \")) | join(\",\")")" \
			"$kid idle ok $K $K 0" \
			"$mode: child $kid: own connection(s): tid state status queries xacts cross"
		# the parent's connection: never a live one of the child; if listed,
		# as inherited and unused
		n=$(q "[.connections[] | select(.pid == $kid and .inherited == true)] | length")
		assert_le "$n" 1 "$mode: child $kid: inherited records"
		if [ "$n" = 1 ]; then
			assert_eq "$(q ".connections[] | select(.pid == $kid and .inherited == true) |
				[.queries, .xacts] | map(tostring) | join(\" \")")" "0 0" \
				"$mode: child $kid: the inherited record is unused"
		fi
		assert_eq "$(q ".processes[] | select(.pid == $kid) |
			[.connections - .inherited_connections, .inherited_connections] |
			map(tostring) | join(\" \")")" "1 $n" \
			"$mode: child $kid: process record: own connections, inherited_connections"
	done
	note "$mode: child records: $(q "[.connections[] | select(.pid != $PID) |
		{pid, tid, inherited, queries}] | tostring")"

	# release: children close theirs and _exit, the parent counts again
	held_end "$mode" 0
	grep -q '^DONE ' "$T/$mode.out" || fail "$mode: no DONE line"

	assert_eq "$(sql_primary "select count(*) from py_fork_t where app = '$APP'")" \
		"$((K * (C + 1)))" "$mode: rows written by parent and children"
	for ((n = 0; n < C; n++)); do
		assert_eq "$(sql_primary "select count(*) from py_fork_t
			where app = '$APP' and who = 'child$n'")" "$K" "$mode: rows of child$n"
	done

	empty() { [ "$(jqp "$POL" '[.connections[], .processes[]] | length')" = 0 ]; }
	wait_until 5 empty || fail "$mode: records left after exit: $(stat_json "$POL")"
	# parent: K + 4 statements (one more count(*) after the children); children K
	local tq=$((K + 4 + C * K))
	assert_eq "$(jqp "$POL" '.totals | [.queries, .xacts] | map(tostring) | join(" ")')" \
		"$tq $tq" "$mode: totals: queries xacts"
	assert_eq "$(jqp "$POL" '.totals | [.connects, .closes] | map(tostring) | join(" ")')" \
		"$((C + 1)) $((C + 1))" "$mode: totals: connects closes (PQfinish calls)"
	assert_eq "$(jqp "$POL" '.totals.leaked // 0')" 0 \
		"$mode: totals.leaked (every connection was closed by its owner; a child must not close the parent's)"
	assert_eq "$(server_backends "$APP")" 0 "$mode: backends left"
}

run_mode fork
run_mode mp
echo "ok: py_fork: parent + $C children, os.fork and multiprocessing"
