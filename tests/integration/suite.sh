# shellcheck shell=bash
# tests/integration/suite.sh: what client libraries' own test suites do,
# under [cap] max_active = 2 with tracking on; sourced after lib.sh by the
# t_suite_*.sh tests.
#
#   suite_policy             $POL: max_active = 2, wait_timeout = 20s,
#                            cross_thread = warn, leak_report = yes, log $T/shim.log
#   suite_build              $T/suite_client from tests/clients/suite_client.c
#   suite_scenario NAME [CONNINFO]
#                            suite_client NAME (or "${SUITE_CMD[@]}" NAME when
#                            SUITE_CMD is set) without the shim (the reference:
#                            it must pass), then under it with SUITE_HOLD: while
#                            the client holds its connections open, every one of
#                            them is idle and ok and no slot is held or waited
#                            for; then the same answer (exit 0, "OK NAME"), and
#                            every connection opened was closed, none leaked
#   suite_held PID           those checks on PID's records, now
#   private_start [CONF]     a PostgreSQL server of the test's own in $T/priv
#                            (never the bed's: it may be restarted); sets
#                            PRIV_PORT, PRIV_CONNINFO; stopped at exit
#   private_restart          pg_ctl restart -m fast

suite_policy() {
	POL=$(policy_new suite "log = $T/shim.log
[cap]
max_active = 2
wait_timeout = 20s
[tracking]
cross_thread = warn
leak_report = yes
")
}

suite_build() {
	cc -I"$(pkg-config --variable=includedir libpq)" -o "$T/suite_client" \
		"$PQT_ROOT/tests/clients/suite_client.c" -lpq -lpthread || fail "cannot build suite_client"
}

SUITE_CONNINFO="host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=pqt user=postgres application_name=$PQT_TEST"

suite_held() {
	local pid=$1 j
	j=$(stat_json "$POL")
	assert_ge "$(jq "[.connections[] | select(.pid == $pid)] | length" <<<"$j")" 1 \
		"connection records of pid $pid"
	assert_eq "$(jq -c "[.connections[] | select(.pid == $pid) | [.state, .status]] | unique" <<<"$j")" \
		'[["idle","ok"]]' "states of pid $pid's connections, all open and idle: $(jq -c .connections <<<"$j")"
	assert_eq "$(jq -c '[.cap.active, .cap.waiting]' <<<"$j")" "[0,0]" \
		"slots held and waited for, every connection idle"
}

_suite_held_or_gone() { grep -qx HOLD "$T/out" || ! kill -0 "$RUN" 2>/dev/null; }

suite_scenario() {
	local name=$1 conninfo=${2:-$SUITE_CONNINFO} rc=0 pid cmd
	if [ -n "${SUITE_CMD+set}" ]; then
		cmd=("${SUITE_CMD[@]}")
	else
		[ -x "$T/suite_client" ] || suite_build
		cmd=("$T/suite_client")
	fi
	[ -n "${POL:-}" ] || suite_policy
	# the reference: libpq alone
	env -u LD_PRELOAD -u PQSHIM_POLICY timeout 60 "${cmd[@]}" "$name" "$conninfo" \
		>"$T/ref.out" 2>"$T/ref.err" || rc=$?
	assert_eq "$rc $(tail -n 1 "$T/ref.out")" "0 OK $name" \
		"without the shim (the reference; stderr: $(cat "$T/ref.err"))"
	# under the shim, held open at the end
	mkfifo "$T/in"
	SUITE_HOLD=1 "$PQSHIM" run -p "$POL" -- "${cmd[@]}" "$name" "$conninfo" \
		<"$T/in" >"$T/out" 2>"$T/err" &
	RUN=$!
	bg_track "$RUN"
	exec 3>"$T/in"
	wait_until 60 _suite_held_or_gone || fail "$name never got to HOLD: $(cat "$T/out" "$T/err")"
	grep -qx HOLD "$T/out" || fail "$name under the shim: $(cat "$T/out" "$T/err")"
	pid=$RUN   # pqshim run execs the client
	suite_held "$pid"
	echo go >&3
	exec 3>&-
	rc=0
	wait "$RUN" || rc=$?
	assert_eq "$rc $(tail -n 1 "$T/out")" "0 OK $name" "under the shim (stderr: $(cat "$T/err"))"
	assert_eq "$(jqp "$POL" '.totals | [.connects == .closes, .leaked] | map(tostring) | join(" ")')" \
		"true 0" "totals: every connection closed, none leaked: $(jqp "$POL" '.totals | tostring')"
	assert_eq "$(jqp "$POL" '[.cap.active, .cap.waiting] | tostring')" "[0,0]" "slots after exit"
	assert_eq "$(grep -v 'read-only\|cross-thread\|another thread' "$T/shim.log" 2>/dev/null | grep -c . || true)" 0 \
		"the shim's log: $(cat "$T/shim.log" 2>/dev/null)"
}

_priv_srv() {
	local as=()
	[ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
	(cd "$T/priv" && "${as[@]}" env -u LD_PRELOAD -u PQSHIM_POLICY -u PGHOST -u PGPORT "$@")
}

private_start() {
	local try
	mkdir -m 0755 "$T/priv" "$T/priv/sock"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$T/priv"
	_priv_srv /usr/lib/postgresql/15/bin/initdb -D "$T/priv/data" -U postgres -A trust --no-sync \
		-E UTF8 --locale=C --no-instructions >"$T/priv/initdb.log" 2>&1 || fail "private initdb"
	for try in 1 2 3 4 5; do
		PRIV_PORT=$((20000 + RANDOM % 20000))
		_priv_srv /usr/lib/postgresql/15/bin/pg_ctl -D "$T/priv/data" -l "$T/priv/server.log" -w -t 30 \
			-o "-c listen_addresses='' -c unix_socket_directories='$T/priv/sock' -c port=$PRIV_PORT -c fsync=off ${1:-}" \
			start >>"$T/priv/pg_ctl.log" 2>&1 && break
		PRIV_PORT=
	done
	[ -n "$PRIV_PORT" ] || fail "private server did not start: $(tail -n 5 "$T/priv/server.log")"
	at_exit '_priv_srv /usr/lib/postgresql/15/bin/pg_ctl -D "$T/priv/data" -m immediate -w stop >/dev/null 2>&1'
	PRIV_CONNINFO="host=$T/priv/sock port=$PRIV_PORT dbname=postgres user=postgres application_name=$PQT_TEST"
}

private_restart() {
	_priv_srv /usr/lib/postgresql/15/bin/pg_ctl -D "$T/priv/data" -m fast -w -t 30 restart \
		>>"$T/priv/pg_ctl.log" 2>&1 || fail "private server restart: $(tail -n 5 "$T/priv/server.log")"
}
