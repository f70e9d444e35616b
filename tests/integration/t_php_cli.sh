#!/usr/bin/env bash
# t_php_cli.sh: php (CLI) through its pgsql and PDO extensions, which PHP
# loads with RTLD_DEEPBIND, is tracked and capped like any other client.
# Under [cap] max_active = 1, six php processes at once (three pgsql, three
# PDO; tests/clients/php_cap.php) run N transactions each; every transaction
# stamps its start and end with the server's clock_timestamp() into a table.
#  - the server never had two of them busy at once: the most intervals
#    [t0, t1] that contain one same instant, computed from the rows, is 1;
#  - while they hold their connections, `pqshim stat` lists the six php
#    processes with one connection each, N transactions counted on each;
#  - the cap was in the way (.cap.waits > 0) and nothing timed out.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
PHP=/usr/bin/php
mods=$("$PHP" -m)
[[ $'\n'$mods$'\n' == *$'\npgsql\n'* && $'\n'$mods$'\n' == *$'\npdo_pgsql\n'* ]] ||
	fail "needs php with pgsql and pdo_pgsql (Debian: php8.2-cli php8.2-pgsql)"
N=5
POL=$(policy_new php_cli "[cap]
max_active = 1
wait_timeout = 60s
")
TABLE=t_php_cli
sql_primary "drop table if exists $TABLE; create table $TABLE (id serial primary key,
	app text, api text, pid int, t0 timestamptz, t1 timestamptz)"

pids=() names=()
for api in pgsql pdo; do
	for i in 1 2 3; do
		name=$api$i
		PGHOST=$PQT_SOCKDIR PGPORT=$PQT_PRIMARY_PORT PGDATABASE=pqt PGUSER=postgres \
			PGAPPNAME=t_php_cli_$name "$PQSHIM" run -p "$POL" -- "$PHP" \
			"$PQT_ROOT/tests/clients/php_cap.php" "$api" "$N" "$TABLE" "$T/release" \
			>"$T/$name.out" 2>"$T/$name.err" &
		pids+=("$!") names+=("$name")
		bg_track "$!"
	done
done
at_exit 'touch "$T/release"'

all_done() {
	local n
	for n in "${names[@]}"; do grep -q '^XACTS ' "$T/$n.out" || return 1; done
}
wait_until 60 all_done || fail "not every php finished its transactions: $(tail -n 3 "$T"/*.err)"

# held open: the processes and their connections, as pqshim stat lists them
J=$(stat_json "$POL")
for n in "${names[@]}"; do
	pid=$(awk '{ print $3 }' "$T/$n.out")
	assert_match "$(jq -r ".processes[] | select(.pid == $pid) | .program" <<<"$J")" '^php' \
		"$n: pid $pid listed as a php process"
	assert_eq "$(jq -r ".processes[] | select(.pid == $pid) | .connections" <<<"$J")" 1 \
		"$n: connections of pid $pid"
	assert_eq "$(jq -r "[.connections[] | select(.pid == $pid)] | length" <<<"$J")" 1 \
		"$n: connection records of pid $pid"
	assert_ge "$(jq -r ".connections[] | select(.pid == $pid) | .xacts" <<<"$J")" "$N" \
		"$n: transactions counted on its connection"
	assert_eq "$(jq -r ".connections[] | select(.pid == $pid) | .application_name" <<<"$J")" \
		"t_php_cli_$n" "$n: application_name"
done
assert_eq "$(server_backends t_php_cli_pgsql1)" 1 "the server's backend of pgsql1"

touch "$T/release"
for k in "${!pids[@]}"; do
	rc=0
	wait "${pids[$k]}" || rc=$?
	assert_eq "$rc" 0 "${names[$k]}: exit status (stderr: $(cat "$T/${names[$k]}.err"))"
done

# the server's own clock: how many transactions were busy at one instant
assert_eq "$(sql_primary "select count(*) from $TABLE where t1 is not null")" $((6 * N)) \
	"transactions logged"
assert_eq "$(sql_primary "select count(distinct pid) from $TABLE")" 6 "php processes logged"
peak=$(sql_primary "select max((select count(*) from $TABLE b where b.t0 <= a.t0 and b.t1 > a.t0))
	from $TABLE a")
note "server: at most $peak transactions busy at one instant"
assert_eq "$peak" 1 "transactions busy at one instant, by the server's clock"
assert_ge "$(jqp "$POL" '.cap.waits')" 1 ".cap.waits (the cap was in the way)"
assert_eq "$(jqp "$POL" '.cap.timeouts')" 0 ".cap.timeouts"
assert_eq "$(jqp "$POL" '.totals | [.connects, .closes] | map(tostring) | join(" ")')" "6 6" \
	"totals connects closes"
echo "ok: 6 php processes (pgsql, PDO) under max_active = 1: server peak $peak, $(jqp "$POL" .cap.waits) waits"
