#!/usr/bin/env bash
# t_php_lo.sh: PHP's large objects are capped and counted like any statement.
# libpq runs lo_create/lo_unlink through its own PQfn; when libpq is loaded by
# an RTLD_DEEPBIND module (PHP's pgsql), those inner calls bind inside libpq
# unless got.c points libpq's own references at the wrappers too.
#  - under max_active = 1, with another session holding the only slot inside
#    a transaction, php's autocommit pg_lo_create waits: the server sees no
#    large object made until that transaction commits;
#  - every pg_lo_create/pg_lo_unlink counts as a statement on php's connection.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

PHP=/usr/bin/php
[[ $'\n'$("$PHP" -m)$'\n' == *$'\npgsql\n'* ]] || fail "needs php with pgsql (Debian: php8.2-pgsql)"
N=3
POL=$(policy_new php_lo "[cap]
max_active = 1
wait_timeout = 60s
")
los() { sql_primary "select count(*) from pg_largeobject_metadata"; }
before=$(los)

PGAPPNAME=t_php_lo_h psql_hold h "$POL"
psql_feed h "begin;" "select 1;"          # h holds the only slot
PGAPPNAME=t_php_lo_php held_start php "$PQSHIM" run -p "$POL" -- "$PHP" \
	"$PQT_ROOT/tests/clients/php_lo.php" "$N"
held_ready php
queued() { [ "$(jqp "$POL" .cap.waiting)" = 1 ]; }
wait_until 10 queued || fail "php's pg_lo_create never queued for the slot: $(cat "$T/php.out" "$T/php.err")"
sleep 0.5
assert_eq "$(los)" "$before" "server: no large object made while another transaction holds the slot"
grep -q '^DONE' "$T/php.out" && fail "php finished its large objects while the slot was held"

psql_feed h "commit;"
done_() { grep -q '^DONE' "$T/php.out"; }
wait_until 20 done_ || fail "php never finished once the slot was free: $(cat "$T/php.err")"
pid=$(awk '/^DONE/ { print $2 }' "$T/php.out")
q=$(jq -r ".connections[] | select(.pid == $pid) | .queries" <<<"$(stat_json "$POL")")
assert_ge "$q" $((2 * N)) "statements counted on php's connection (a pg_lo_create and a pg_lo_unlink each)"
assert_eq "$(jqp "$POL" .cap.active)" 0 "no slot held once php's large objects are done"
held_end php 0
held_end h 0
assert_eq "$(los)" "$before" "server: php's large objects all unlinked"
echo "ok: php's pg_lo_create waited for the slot; $q statements counted"
