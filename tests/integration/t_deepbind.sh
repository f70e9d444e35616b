#!/usr/bin/env bash
# t_deepbind.sh: modules loaded with RTLD_DEEPBIND (as PHP loads pgsql.so)
# bind libpq directly; the shim points their references at its wrappers, in
# every way such a module can come (tests/clients/deepbind_host.c and
# deepbind_mod.c), and every connection they make is tracked:
#  - a module linked bind-now with RELRO (its GOT read-only once loaded),
#    dlopened by a bare name that only the host's RUNPATH ($ORIGIN) finds;
#  - a module linked lazily without RELRO, dlopened RTLD_LAZY, used twice
#    (the first call would bind it, the second must still reach the shim);
#  - the first module again after dlclose (unloaded, loaded anew);
#  - a module that the first loads itself with RTLD_DEEPBIND (its dlopen binds
#    to libc's, past the shim's);
#  - a module loaded and used on another thread, by a path with $ORIGIN
#    (the host's directory, as glibc expands it for the caller);
#  - eight modules loaded at once by eight threads (a barrier), each used
#    as soon as its dlopen returns;
#  - a library the host is linked with, whose constructor loads a module
#    (RTLD_DEEPBIND) and uses it before main (and, in init order, before the
#    shim's own constructor).
# Each use is one connection, one statement, closed: pqshim stat's totals
# count every one of them (connects, closes, queries), nothing leaked.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
C=$PQT_ROOT/tests/clients
INC=-I$(pkg-config --variable=includedir libpq)
cc "$INC" -shared -fPIC -Wl,-z,now -Wl,-z,relro -o "$T/mod_now.so" "$C/deepbind_mod.c" -lpq
cc "$INC" -shared -fPIC -Wl,-z,lazy -Wl,-z,norelro -o "$T/mod_lazy.so" "$C/deepbind_mod.c" -lpq
cp "$T/mod_now.so" "$T/mod_inner.so"
cp "$T/mod_now.so" "$T/mod_ctor_inner.so"
for k in 0 1 2 3 4 5 6 7; do cp "$T/mod_now.so" "$T/mod_t$k.so"; done
cc "$INC" -shared -fPIC -DCTOR -Wl,-z,now -o "$T/libctor.so" "$C/deepbind_mod.c" -lpq
cc "$INC" -o "$T/deepbind_host" "$C/deepbind_host.c" -L"$T" -lctor -ldl -lpthread \
	-Wl,--enable-new-dtags -Wl,-rpath,'$ORIGIN'
dyn_now=$(readelf -d "$T/mod_now.so") seg_now=$(readelf -lW "$T/mod_now.so")
dyn_lazy=$(readelf -d "$T/mod_lazy.so") seg_lazy=$(readelf -lW "$T/mod_lazy.so")
[[ $dyn_now =~ FLAGS.*NOW ]] || fail "mod_now.so is not bind-now"
[[ $seg_now == *GNU_RELRO* ]] || fail "mod_now.so has no RELRO"
[[ ! $dyn_lazy =~ FLAGS.*NOW ]] || fail "mod_lazy.so is bind-now"
[[ $seg_lazy != *GNU_RELRO* ]] || fail "mod_lazy.so has RELRO"
[[ $(readelf -d "$T/deepbind_host") =~ RUNPATH.*'$ORIGIN' ]] || fail "the host has no RUNPATH \$ORIGIN"

POL=$(policy_new deepbind "log = $T/shim.log
[tracking]
leak_report = yes
")
CONNINFO="host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=pqt user=postgres application_name=t_deepbind"
rc=0
DEEPBIND_CONNINFO="$CONNINFO" DEEPBIND_CTOR_MOD=$T/mod_ctor_inner.so "$PQSHIM" run -p "$POL" -- "$T/deepbind_host" "$CONNINFO" \
	now mod_now.so run close \
	lazy "$T/mod_lazy.so" run run close \
	now "$T/mod_now.so" run inner "$T/mod_inner.so" close \
	thread '$ORIGIN/mod_now.so' threads 8 "$T/mod_t" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 0 "deepbind_host exit status (stderr: $(cat "$T/err"))"
assert_eq "$(grep -cE '^(RUN|CTOR) [0-9]+$' "$T/out")" 15 "uses that worked: $(cat "$T/out")"
assert_eq "$(grep -c '^CTOR ' "$T/out")" 1 "the constructor's use"
assert_eq "$(jqp "$POL" '.totals | [.connects, .closes, .queries, .leaked] | map(tostring) | join(" ")')" \
	"15 15 15 0" "totals: connects closes queries leaked (all 15 uses seen)"
assert_eq "$(jqp "$POL" '.totals.escaped')" 0 "escapes"
assert_eq "$(grep -c 'not covered\|could not' "$T/shim.log" 2>/dev/null || true)" 0 \
	"complaints in the shim's log: $(cat "$T/shim.log" 2>/dev/null)"
assert_eq "$(server_backends t_deepbind)" 0 "backends left"
echo "ok: 15 uses through RTLD_DEEPBIND modules (RELRO, lazy, reloaded, nested, threaded, constructor) all tracked"
