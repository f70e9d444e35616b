#!/usr/bin/env bash
# t_c_client.sh - every libpq connect path and every way of sending work,
# from C, under the shim: exact statement and transaction counts per
# connection, matched to the server's backends; dlsym keeps its meaning.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cc -Wall -Werror -I"$(pkg-config --variable=includedir libpq)" \
	"$PQT_ROOT/tests/clients/c_client.c" -o "$T/c_client" -lpq -ldl

# Without the shim: the program itself is right.  (Under the shim the same
# answers are the discriminating ones: a dlsym that did not tail-call glibc
# would make RTLD_NEXT mean "after the shim", i.e. libpq, not the shim.)
direct=$(echo | "$T/c_client")
assert_match "$direct" 'dlsym next_is_default 1 handle_is_default 1' "dlsym without the shim"

POL=$(policy_new pol)
held_start c "$PQSHIM" run -p "$POL" -- "$T/c_client" # it waits for EOF
held_ready c READY

# The shim's dlsym: RTLD_NEXT from the program still means "after the
# program" (the shim itself, preloaded right after it), and a look-up on
# libpq's own handle (ctypes) gives the wrapper.
assert_match "$(cat "$T/c.out")" 'dlsym next_is_default 1 handle_is_default 1 other_untouched 1' "dlsym under the shim"

S=$(stat_json "$POL")
pid=$(jq -r '.processes[] | select(.program == "c_client") | .pid' <<<"$S")
assert_eq "$(jq "[.connections[] | select(.pid == $pid)] | length" <<<"$S")" 4 "connections of the client"
assert_eq "$(server_backends c_client)" 4 "backends the server sees"
while read -r _ name _ backend _ q _ x; do
	rec=$(jq -c ".connections[] | select(.backend_pid == $backend)" <<<"$S")
	[ -n "$rec" ] || fail "$name: no record with backend $backend"
	assert_eq "$(jq -r .queries <<<"$rec")" "$q" "$name: statements"
	assert_eq "$(jq -r .xacts <<<"$rec")" "$x" "$name: transactions"
	assert_eq "$(jq -r .state <<<"$rec")" idle "$name: state"
	assert_eq "$(jq -r .tid <<<"$rec")" "$pid" "$name: opener thread (the main thread)"
	assert_eq "$(jq -r .application_name <<<"$rec")" c_client "$name: application_name"
	got=$(sql_primary "select count(*) from pg_stat_activity where pid = $backend and application_name = 'c_client'")
	assert_eq "$got" 1 "$name: backend $backend on the primary"
done < <(grep '^conn ' "$T/c.out")

held_end c "" 10                     # EOF: the client finishes everything
S=$(stat_json "$POL")
assert_eq "$(jq '.connections | length' <<<"$S")" 0 "no connection left after PQfinish"
assert_eq "$(jq .totals.queries <<<"$S")" 25 "total statements survive the process"
assert_eq "$(jq .totals.xacts <<<"$S")" 17 "total transactions survive the process"
assert_eq "$(jq .totals.connects <<<"$S")" 4 "connects (PQping and PQreset are not connections)"
assert_eq "$(jq .totals.leaked <<<"$S")" 0 "nothing leaked"
