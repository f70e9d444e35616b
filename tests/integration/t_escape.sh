#!/usr/bin/env bash
# t_escape.sh: a program that reaches PostgreSQL through a libpq the shim
# cannot bring back is reported once in the log and counted in `pqshim stat`
# (totals.escaped, totals.escaped_object), and only the connection made
# through the system's libpq is tracked. Two planted escapes
# (tests/clients/escape_client.c, which also links the system's libpq):
#  - copy: a renamed copy of libpq.so.5 ($T/libpq-deadbeef.so.5, as wheels
#    bundle libpq-<hash>.so) dlopened twice and called through dlsym;
#  - static: a module with libpq.a linked in, dlopened with RTLD_DEEPBIND;
#  - needs: a module that needs a renamed copy (its SONAME rewritten to
#    libpq-db.5), dlopened with RTLD_DEEPBIND: the module is reported, as
#    calling that copy, and the copy is not reported again.
# And what is not an escape: a program whose only libpq is a renamed copy
# (linked against libpq-db.5 alone, as psycopg2-binary's module is) is
# tracked through it, and nothing is reported.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
PGLIB=/usr/lib/postgresql/15/lib
CFLAGS=(-I"$(pkg-config --variable=includedir libpq)")
cc "${CFLAGS[@]}" -o "$T/escape_client" "$PQT_ROOT/tests/clients/escape_client.c" -lpq -ldl ||
	fail "cannot build escape_client"
cp /usr/lib/x86_64-linux-gnu/libpq.so.5 "$T/libpq-deadbeef.so.5"
cc "${CFLAGS[@]}" -shared -fPIC -o "$T/libplug.so" "$PQT_ROOT/tests/clients/escape_plug.c" /usr/lib/x86_64-linux-gnu/libpq.a \
	-L"$PGLIB" -lpgcommon_shlib -lpgport_shlib -lssl -lcrypto -lgssapi_krb5 -l:libldap-2.5.so.0 ||
	fail "cannot build a module with libpq linked in"
[[ "$(nm -D --defined-only "$T/libplug.so")" =~ " T PQconnectdb"$'\n' ]] || fail "libplug.so defines no PQconnectdb"

# the same module, needing a renamed copy of libpq instead
python3 - "$T/libpq-db.5" <<'EOF'
import sys
d = open("/usr/lib/x86_64-linux-gnu/libpq.so.5", "rb").read()
assert d.count(b"libpq.so.5\0") == 1, "libpq.so.5 has not exactly one such string"
open(sys.argv[1], "wb").write(d.replace(b"libpq.so.5\0", b"libpq-db.5\0"))
EOF
cc "${CFLAGS[@]}" -shared -fPIC -o "$T/libplugdb.so" "$PQT_ROOT/tests/clients/escape_plug.c" -L"$T" -l:libpq-db.5 \
	-Wl,--enable-new-dtags -Wl,-rpath,'$ORIGIN' || fail "cannot build a module needing the copy"
[[ "$(readelf -d "$T/libplugdb.so")" =~ "Shared library: [libpq-db.5]" ]] ||
	fail "libplugdb.so does not need libpq-db.5"
cc "${CFLAGS[@]}" -o "$T/escape_client_db" "$PQT_ROOT/tests/clients/escape_client.c" \
	-L"$T" -l:libpq-db.5 -ldl -Wl,--enable-new-dtags -Wl,-rpath,'$ORIGIN' ||
	fail "cannot build escape_client against the copy alone"

CONNINFO="host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=pqt user=postgres application_name=t_escape"

# plant KIND MODE LIB OBJECT HOW: one run of escape_client MODE LIB, then the checks.
plant() {
	local kind=$1 mode=$2 lib=$3 object=$4 how=$5 pol log rc=0 n
	log=$T/$kind.log
	pol=$(policy_new "$kind" "log = $log
[tracking]
leak_report = yes
")
	"$PQSHIM" run -p "$pol" -- "$T/escape_client" "$mode" "$lib" "$CONNINFO" \
		>"$T/$kind.out" 2>"$T/$kind.err" || rc=$?
	assert_eq "$rc" 0 "$kind: escape_client exit status (stderr: $(cat "$T/$kind.err"))"
	assert_match "$(cat "$T/$kind.out")" "ESCAPED [0-9]+" "$kind: the escaped connection worked"
	assert_match "$(cat "$T/$kind.out")" "TRACKED [0-9]+" "$kind: the tracked connection worked"
	n=$(grep -c "$object calls its own libpq ($how): not covered" "$log" || true)
	assert_eq "$n" 1 "$kind: log lines reporting $object (log: $(cat "$log" 2>/dev/null))"
	assert_eq "$(grep -c 'calls its own libpq' "$log")" 1 "$kind: escape lines in the log"
	assert_eq "$(jqp "$pol" '.totals | [.escaped, .escaped_object] | map(tostring) | join(" ")')" \
		"1 $object" "$kind: totals.escaped and escaped_object"
	# the escaped connection is not the shim's: one connect, one close, no leak
	assert_eq "$(jqp "$pol" '.totals | [.connects, .closes, .leaked] | map(tostring) | join(" ")')" \
		"1 1 0" "$kind: totals connects closes leaked"
	assert_match "$("$PQSHIM" stat -p "$pol")" "escaped 1: objects calling their own libpq, not covered \(last: $object\)" \
		"$kind: the table's escaped line"
	echo "ok: $kind: $(grep -o "$object calls.*" "$log")"
}

plant copy copy "$T/libpq-deadbeef.so.5" "$T/libpq-deadbeef.so.5" \
	"a second libpq, loaded beside the one the shim wraps"
plant static module "$T/libplug.so" "$T/libplug.so" "linked in: it defines PQconnectdb itself"
plant needs module "$T/libplugdb.so" "$T/libplugdb.so" "$T/libpq-db.5"

# the copy alone: interposed like libpq.so.5, nothing reported
log=$T/alone.log
pol=$(policy_new alone "log = $log
")
rc=0
"$PQSHIM" run -p "$pol" -- "$T/escape_client_db" none - "$CONNINFO" >"$T/alone.out" 2>"$T/alone.err" || rc=$?
assert_eq "$rc" 0 "alone: exit status (stderr: $(cat "$T/alone.err"))"
assert_match "$(cat "$T/alone.out")" "TRACKED [0-9]+" "alone: the connection worked"
[[ "$(ldd "$T/escape_client_db")" != *libpq.so.5* ]] || fail "escape_client_db loads libpq.so.5"
assert_eq "$(jqp "$pol" '.totals | [.connects, .closes, .queries, .escaped] | map(tostring) | join(" ")')" \
	"1 1 1 0" "alone: totals connects closes queries escaped (tracked through the copy)"
assert_eq "$(grep -c 'calls its own libpq' "$log" 2>/dev/null || true)" 0 "alone: escape lines in the log"
echo "ok: a renamed copy as the only libpq is covered"

assert_eq "$(server_backends t_escape)" 0 "backends left"
