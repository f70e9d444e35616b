# shellcheck shell=bash
# tests/integration/pgbed.sh: throw-away PostgreSQL 15 primary + streaming
# replica for the integration tests and the benchmarks (sourced).
#
#   pgbed_start   temp dir, initdb, primary, database pqt, pg_basebackup -R
#                 replica, waits until it streams; exports PQT_PGTMP
#                 PQT_SOCKDIR PQT_PRIMARY_PORT PQT_REPLICA_PORT and
#                 PGHOST PGPORT PGUSER PGDATABASE. Returns non-zero (and leaves
#                 nothing behind, printing the logs' tails) on failure.
#   pgbed_stop    stops both servers, removes the temp dir. Idempotent, and
#                 safe under set -e (e.g. in an EXIT trap).
#
# Unix sockets only (listen_addresses=''), trust auth. As root the servers run
# as user postgres (runuser), otherwise as the calling user.
# PQT_PGBIN overrides the server binaries' directory. PQT_BED_TLS=1: both
# servers also listen on 127.0.0.1 (same port numbers) with ssl = on and a
# throw-away self-signed certificate (openssl), for tests of TLS connections.

_PGBED_BIN=${PQT_PGBIN:-/usr/lib/postgresql/15/bin}
_PGBED_TMP=

# Run a server-side command: as postgres when root, in the temp dir (root's
# cwd may be unreadable for postgres), never under the shim.
_pgbed_srv() {
	local as=()
	[ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
	(cd "$_PGBED_TMP" && "${as[@]}" env -u LD_PRELOAD -u PQSHIM_POLICY \
		-u PGOPTIONS -u PGSERVICE -u PGHOST -u PGPORT "$@")
}

# _pgbed_sql PORT SQL: one value from the server on PORT (db postgres).
_pgbed_sql() {
	env -u LD_PRELOAD -u PGOPTIONS -u PGSERVICE PGAPPNAME=pgbed \
		"$_PGBED_BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$_PGBED_TMP/sock" \
		-p "$1" -U postgres -d postgres -c "$2" 2>/dev/null
}

# _pgbed_poll SECONDS PORT SQL EXPECTED: poll every 50 ms.
_pgbed_poll() {
	local i
	for ((i = 0; i < $1 * 20; i++)); do
		[ "$(_pgbed_sql "$2" "$3")" = "$4" ] && return 0
		sleep 0.05
	done
	echo "pgbed: timed out after $1 s waiting for '$3' = '$4' on port $2" >&2
	return 1
}

_pgbed_pick_port() { # a port with no socket in ours or the usual socket dirs
	local p d used
	while :; do
		p=$((20000 + RANDOM % 20001)) used=
		for d in "$_PGBED_TMP/sock" /tmp /var/run/postgresql; do
			[ -e "$d/.s.PGSQL.$p" ] && used=1
		done
		# with TLS, nothing may listen on it on 127.0.0.1 either
		if [ "${PQT_BED_TLS:-}" = 1 ] && (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used=1
		fi
		[ -z "$used" ] && [ "$p" != "${1:-}" ] && break
	done
	echo "$p"
}

_pgbed_fail() {
	local f
	echo "pgbed: start failed: $*" >&2
	for f in "$_PGBED_TMP"/*.log; do
		[ -s "$f" ] || continue
		echo "---- tail of ${f##*/} ----" >&2
		tail -n 20 "$f" >&2
	done
	pgbed_stop
	return 1
}

pgbed_start() {
	if [ -n "$_PGBED_TMP" ]; then
		echo "pgbed: already started in $_PGBED_TMP" >&2
		return 1
	fi
	local t pp rp
	_PGBED_TMP=$(mktemp -d /tmp/pqt-bed.XXXXXX) || return 1
	t=$_PGBED_TMP
	chmod 0755 "$t" && mkdir -m 0755 "$t/sock" || { _pgbed_fail "temp dir"; return 1; }
	if [ "$(id -u)" = 0 ]; then
		chown -R postgres: "$t" || { _pgbed_fail "chown $t"; return 1; }
	fi
	pp=$(_pgbed_pick_port) && rp=$(_pgbed_pick_port "$pp")

	_pgbed_srv "$_PGBED_BIN/initdb" -D "$t/primary" -U postgres -A trust \
		--no-sync -E UTF8 --locale=C --no-instructions >"$t/initdb.log" 2>&1 ||
		{ _pgbed_fail "initdb"; return 1; }
	cat >>"$t/primary/postgresql.conf" <<-EOF || { _pgbed_fail "config"; return 1; }
		# pgbed
		listen_addresses = ''
		unix_socket_directories = '$t/sock'
		port = $pp
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		max_connections = 200
		shared_buffers = 16MB
		wal_level = replica
		max_wal_senders = 5
		wal_keep_size = 128MB
		hot_standby = on
		wal_receiver_status_interval = 1s
		client_connection_check_interval = 250ms
	EOF
	if [ "${PQT_BED_TLS:-}" = 1 ]; then
		# the replica's base backup copies the certificate and the settings
		_pgbed_srv openssl req -new -x509 -days 2 -nodes -subj /CN=localhost \
			-keyout "$t/primary/server.key" -out "$t/primary/server.crt" \
			>"$t/openssl.log" 2>&1 &&
			_pgbed_srv chmod 0600 "$t/primary/server.key" &&
			printf "listen_addresses = '127.0.0.1'\nssl = on\n" >>"$t/primary/postgresql.conf" ||
			{ _pgbed_fail "TLS set-up (needs openssl)"; return 1; }
	fi
	_pgbed_srv "$_PGBED_BIN/pg_ctl" -D "$t/primary" -l "$t/primary.log" -w -t 30 \
		start >>"$t/pg_ctl.log" 2>&1 || { _pgbed_fail "primary start"; return 1; }
	# Create pqt before the base backup: the replica gets it from the backup.
	_pgbed_sql "$pp" "create database pqt" >/dev/null ||
		{ _pgbed_fail "create database pqt"; return 1; }

	_pgbed_srv "$_PGBED_BIN/pg_basebackup" -D "$t/replica" -R -X stream -c fast \
		--no-sync -d "host=$t/sock port=$pp user=postgres" \
		>"$t/basebackup.log" 2>&1 || { _pgbed_fail "pg_basebackup"; return 1; }
	echo "port = $rp" >>"$t/replica/postgresql.conf" || { _pgbed_fail "config"; return 1; }
	_pgbed_srv "$_PGBED_BIN/pg_ctl" -D "$t/replica" -l "$t/replica.log" -w -t 30 \
		start >>"$t/pg_ctl.log" 2>&1 || { _pgbed_fail "replica start"; return 1; }

	_pgbed_poll 10 "$rp" "select pg_is_in_recovery()" t &&
		_pgbed_poll 10 "$pp" "select count(*) from pg_stat_replication where state = 'streaming'" 1 &&
		_pgbed_poll 10 "$rp" "select count(*) from pg_database where datname = 'pqt'" 1 ||
		{ _pgbed_fail "replica not streaming"; return 1; }

	export PQT_PGTMP=$t PQT_SOCKDIR=$t/sock PQT_PRIMARY_PORT=$pp PQT_REPLICA_PORT=$rp
	export PGHOST=$t/sock PGPORT=$pp PGUSER=postgres PGDATABASE=pqt
}

# Postmasters still running on our data dirs (pg_ctl stop failed, or a start
# was interrupted while pg_ctl, in its own session, was launching one).
_pgbed_strays() { pgrep -f -- "-D $_PGBED_TMP/(primary|replica)\$" 2>/dev/null; }

pgbed_stop() {
	local t=$_PGBED_TMP d pids n
	[ -n "$t" ] || return 0
	for d in "$t/replica" "$t/primary"; do
		[ -f "$d/postmaster.pid" ] || continue
		_pgbed_srv "$_PGBED_BIN/pg_ctl" -D "$d" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
			_pgbed_srv "$_PGBED_BIN/pg_ctl" -D "$d" -m fast -w -t 10 stop >/dev/null 2>&1 ||
			true
	done
	# Then any postmaster left on our data dirs, by pid: SIGQUIT (immediate
	# shutdown), SIGKILL after 5 s.
	for ((n = 0; n < 100; n++)); do
		pids=$(_pgbed_strays) || true
		[ -n "$pids" ] || break
		# shellcheck disable=SC2086
		kill "$([ "$n" -lt 50 ] && echo -QUIT || echo -KILL)" $pids 2>/dev/null || true
		sleep 0.1
	done
	rm -rf "$t" 2>/dev/null || { sleep 0.2; rm -rf "$t" || true; }
	_PGBED_TMP=
	unset PQT_PGTMP PQT_SOCKDIR PQT_PRIMARY_PORT PQT_REPLICA_PORT
	unset PGHOST PGPORT PGUSER PGDATABASE
	return 0
}
