#!/usr/bin/env bash
# t_php_fpm.sh: php-fpm's pre-forked workers, whose pgsql extension PHP
# loads with RTLD_DEEPBIND, are tracked, capped and moved to the replica
# like any other client. php-fpm runs under the shim with its own config in
# $T: pm = static, 4 workers, a Unix socket; tests/clients/php_fpm.php holds
# a persistent connection (pg_pconnect) per worker.
#  - 8 requests at once (cgi-fcgi) under [cap] max_active = 1, each one
#    transaction stamped with the server's clock_timestamp() at its start
#    and end: the most transactions that contain one same instant, from the
#    rows, is 1; every worker answered, each always on its one backend;
#  - `pqshim stat --json` lists the 4 workers (program php-fpm*) with one
#    connection each, their backends those the answers name; 4 connects in
#    all (persistent: the second request on a worker connects nothing);
#  - with the flag file present, 8 more requests are answered by the
#    replica (pg_is_in_recovery() true) and their writes fail with 25006:
#    the same 4 persistent connections, moved under PHP (4 migrations, no
#    new connect).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
FPM=/usr/sbin/php-fpm8.2
CGI_FCGI=/usr/bin/cgi-fcgi
[ -x "$FPM" ] && [ -x "$CGI_FCGI" ] || fail "needs php-fpm8.2 and cgi-fcgi (Debian: php8.2-fpm php8.2-pgsql libfcgi-bin)"
TABLE=t_php_fpm APP=t_php_fpm
sql_primary "drop table if exists $TABLE; create table $TABLE (id serial primary key,
	pid int, t0 timestamptz, t1 timestamptz)"
wait_until 10 sql_replica "select 1 from $TABLE limit 0" || fail "the table never reached the replica"

FLAG=$T/read-only.flag
POL=$(ro_policy fpm "$T/shim.log" "[cap]
max_active = 1
wait_timeout = 60s")

SOCK=$T/fpm.sock
cat >"$T/fpm.conf" <<EOF
[global]
pid = $T/fpm.pid
error_log = $T/fpm.log
daemonize = no
[t_php_fpm]
listen = $SOCK
listen.mode = 0600
pm = static
pm.max_children = 4
clear_env = no
catch_workers_output = yes
EOF
PGHOST=$PQT_SOCKDIR PGPORT=$PQT_PRIMARY_PORT PGDATABASE=pqt PGUSER=postgres PGAPPNAME=$APP \
	"$PQSHIM" run -p "$POL" -- "$FPM" -F -R -y "$T/fpm.conf" >"$T/fpm.out" 2>&1 &
FPM_RUN=$!
bg_track "$FPM_RUN"
fpm_up() { [ -S "$SOCK" ] && [ "$(pgrep -c -P "$(cat "$T/fpm.pid")")" = 4 ]; }
wait_until 20 fpm_up || fail "php-fpm did not start 4 workers: $(cat "$T/fpm.log" "$T/fpm.out")"

# request N QUERY: one request, its answer's JSON line in $T/answer.N
request() {
	env -i SCRIPT_FILENAME="$PQT_ROOT/tests/clients/php_fpm.php" REQUEST_METHOD=GET \
		QUERY_STRING="$2" timeout 60 "$CGI_FCGI" -bind -connect "$SOCK" 2>&1 | grep '^{' >"$T/answer.$1"
}
# batch FIRST QUERY: 8 requests at once, numbered FIRST..FIRST+7
batch() {
	local i pids=()
	for ((i = $1; i < $1 + 8; i++)); do
		request "$i" "$2" &
		pids+=("$!")
	done
	for i in "${pids[@]}"; do wait "$i" || fail "a request failed (exit $?)"; done
}
answers() { cat "$T"/answer."$1"* | jq -s -c "$2"; }

# --- 8 requests at once under max_active = 1 ---------------------------------
batch 10 "op=xact&table=$TABLE"
assert_eq "$(answers 1 'length')" 8 "answers"
assert_eq "$(answers 1 '[.[] | select(.ok == true and .recovery == false)] | length')" 8 \
	"transactions committed on the primary: $(answers 1 .)"
assert_eq "$(answers 1 '[.[].pid] | unique | length')" 4 "workers that answered"
assert_eq "$(answers 1 '[.[].backend] | unique | length')" 4 "backends the answers name"
assert_eq "$(answers 1 'group_by(.pid) | map([.[].backend] | unique | length) | max')" 1 \
	"backends per worker (persistent connections)"
peak=$(sql_primary "select max((select count(*) from $TABLE b where b.t0 <= a.t0 and b.t1 > a.t0))
	from $TABLE a where a.t1 is not null")
assert_eq "$(sql_primary "select count(*) from $TABLE where t1 is not null")" 8 "transactions logged"
note "server: at most $peak transactions busy at one instant"
assert_eq "$peak" 1 "transactions busy at one instant, by the server's clock"

J=$(stat_json "$POL")
assert_eq "$(jq '[.processes[] | select(.program | test("^php-fpm"))] | length' <<<"$J")" 4 \
	"php-fpm workers listed: $(jq -c .processes <<<"$J")"
assert_eq "$(jq -c '[.processes[] | select(.program | test("^php-fpm")) | .connections] | unique' <<<"$J")" \
	"[1]" "connections per worker"
assert_eq "$(jq -c '[.processes[].pid] | sort' <<<"$J")" "$(answers 1 '[.[].pid] | unique | sort')" \
	"the workers listed are those that answered"
assert_eq "$(jq -c '[.connections[].backend_pid] | sort' <<<"$J")" \
	"$(answers 1 '[.[].backend] | unique | sort')" "the connections' backends are those that answered"
assert_eq "$(jq -c '[.connections[] | [.target, .application_name]] | unique' <<<"$J")" \
	"[[\"primary\",\"$APP\"]]" "targets and application_name"
assert_eq "$(jq .totals.connects <<<"$J")" 4 "connects (persistent: one per worker)"
assert_ge "$(jq .cap.waits <<<"$J")" 1 ".cap.waits (the cap was in the way)"
assert_eq "$(jq .cap.timeouts <<<"$J")" 0 ".cap.timeouts"

# --- read-only: the replica answers ------------------------------------------
touch "$FLAG"
wait_until 10 ro_noticed "$T/shim.log" on 4 || fail "the workers never noticed read-only: $(cat "$T/shim.log")"
# idle connections left on the primary are ended by each worker's drainer
primary_empty() { [ "$(server_backends "$APP")" = 0 ]; }
wait_until 10 primary_empty || fail "backends of $APP left on the primary"
batch 20 "op=ro&table=$TABLE"
assert_eq "$(answers 2 'length')" 8 "answers while read-only"
assert_eq "$(answers 2 '[.[] | select(.recovery == true)] | length')" 8 \
	"answers read on the replica (pg_is_in_recovery): $(answers 2 .)"
assert_eq "$(answers 2 '[.[].sqlstate] | unique')" '["25006"]' "the writes' SQLSTATE"
assert_eq "$(server_backends "$APP")" 0 "backends of $APP left on the primary"
assert_eq "$(server_backends "$APP" replica)" 4 "backends of $APP on the replica"
J=$(stat_json "$POL")
assert_eq "$(jq -c '[.connections[].target] | unique' <<<"$J")" '["replica"]' "targets while read-only"
assert_eq "$(jq '[.processes[] | select(.program | test("^php-fpm"))] | length' <<<"$J")" 4 \
	"php-fpm workers listed while read-only"
assert_eq "$(sql_primary "select count(*) from $TABLE")" 8 "rows: nothing written while read-only"
# the workers' persistent connections moved under them: PHP connected nothing new
J=$(stat_json "$POL")
note "totals: $(jq -c '.totals | {connects, redirects, migrations}' <<<"$J")"
assert_eq "$(jq .totals.connects <<<"$J")" 4 "connects while read-only (the same persistent ones)"
assert_ge "$(jq .totals.migrations <<<"$J")" 4 "migrations (each worker's connection moved)"
echo "ok: php-fpm, 4 workers, 8 requests at once: server peak $peak; read-only answered by the replica"
