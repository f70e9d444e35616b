# shellcheck shell=bash
# tests/integration/client.sh: a driver's client (tests/clients/*) held open
# while the test looks; sourced after lib.sh by t_psycopg3, t_ruby, t_perl
# and the read-only tests with one client.  The client opens its connections, prints READY, "PID n" and
# "CONN {json}" lines, waits for EOF on its stdin, finishes and prints
# "DONE ...".
#
#   client_start NAME CMD...  runs CMD under pqshim (policy $POL, $SECRET if
#                             set as PGPASSWORD), its stdin on a fifo (fd 3),
#                             held as "client" (held_send client LINE,
#                             held_end client 0); waits for READY; sets RUN
#                             and PID (if printed)
#   client_tid CONN           the opener tid the client reported for CONN
#   client_held               the server sees $APP's 2 backends; pqshim stat
#                             kept in $T/held.json, without the password;
#                             q JQ queries it, $mine selects PID's records
#   client_two_threads PROGRAM QA XA QB XB
#                             (after client_held) connection A opened by the
#                             main thread, B by another ($TA, $TB): their
#                             records' opener tids; each used by its opener
#                             only, idle, ok, not inherited, application_name
#                             $APP, QA/QB queries, XA/XB xacts; the server's
#                             port; the process record: PROGRAM (a regex), 2
#                             connections, 2 threads or more
#   client_rows TABLE         the rows the client wrote (column who): A's K
#                             INSERTs and R COPY rows, B's K committed, none
#                             of its rolled back ones; client_who TABLE WHO
#                             counts one kind
#   client_ro_table           the table ro_t that py_readonly.py and
#                             py_async_ro.py write to, on the replica too
#   client_end NAME QUERIES XACTS
#                             EOF; exit status 0 and a DONE line; PID's
#                             records go; totals 2 connects, 2 closes, QUERIES,
#                             XACTS; no backend of $APP left

_client_gone() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $PID)] | length")" = 0 ]; }

# held "client" (lib.sh's held_*), on the files and the fd 3 said above
client_start() {
	local name=$1
	shift
	_pqt_hold client "$T/in" "$T/out" "$T/err" 3 \
		env ${SECRET:+"PGPASSWORD=$SECRET"} "$PQSHIM" run -p "$POL" -- "$@"
	held_ready client
	PID=$(awk '$1 == "PID" { print $2 }' "$T/out")
}

client_tid() { sed -n 's/^CONN //p' "$T/out" | jq -r "select(.name == \"$1\") | .tid"; }

client_held() {
	assert_eq "$(server_backends "$APP")" 2 "backends with application_name $APP"
	stat_json "$POL" >"$T/held.json"
	! grep -q "$SECRET" "$T/held.json" || fail "stat shows the password"
	# shellcheck disable=SC2034 # used by the tests that source this
	mine=".connections[] | select(.pid == $PID)"
}

q() { jq -r "$1" "$T/held.json"; }

_client_rec() { q "$mine | select(.tid == $1) | [.threads == [.tid], .state, .status, .inherited,
	.application_name, .queries, .xacts] | map(tostring) | join(\" \")"; }
client_two_threads() {
	assert_eq "$(q "[$mine | .tid] | sort | map(tostring) | join(\" \")")" \
		"$(printf '%s\n' "$TA" "$TB" | sort -n | tr '\n' ' ' | sed 's/ $//')" "opener tids"
	assert_eq "$(_client_rec "$TA")" "true idle ok false $APP $2 $3" \
		"A: only-opener state status inherited application_name queries xacts"
	assert_eq "$(_client_rec "$TB")" "true idle ok false $APP $4 $5" \
		"B: only-opener state status inherited application_name queries xacts"
	assert_match "$(q "[$mine][0].server")" "(^| )port=$PQT_PRIMARY_PORT( |$)" "server"
	assert_match "$(q ".processes[] | select(.pid == $PID) | .program")" "$1" "program"
	assert_eq "$(q ".processes[] | select(.pid == $PID) | .connections")" 2 \
		"process record: connections"
	assert_ge "$(q ".processes[] | select(.pid == $PID) | .threads")" 2 \
		"process record: threads"
}

client_who() { sql_primary "select count(*) from $1 where app = '$APP' and who = '$2'"; }
client_rows() {
	assert_eq "$(client_who "$1" a)" "$K" "rows: A's INSERTs"
	assert_eq "$(client_who "$1" a_copy)" "$R" "rows: A's COPY FROM"
	assert_eq "$(client_who "$1" b)" "$K" "rows: B's committed INSERTs"
	assert_eq "$(client_who "$1" b_rolled_back)" 0 "rows: B's rolled back INSERTs"
}

client_ro_table() {
	sql_primary "create table if not exists ro_t (at timestamptz)"
	replica_catch_up 10 "table ro_t"
	sql_replica "select 1 from ro_t limit 0" >/dev/null || fail "no table ro_t on the replica"
}

client_end() {
	local name=$1 queries=$2 xacts=$3
	held_end client
	assert_eq "$HELD_RC" 0 "$name exit status (stderr: $(cat "$T/err"))"
	grep -q '^DONE ' "$T/out" || fail "$name: no DONE line"
	wait_until 5 _client_gone || fail "records of pid $PID still listed after exit"
	assert_eq "$(jqp "$POL" '.totals | [.connects, .closes, .queries, .xacts] |
		map(tostring) | join(" ")')" "2 2 $queries $xacts" \
		"totals: connects closes queries xacts"
	assert_eq "$(server_backends "$APP")" 0 "backends left after exit"
}
