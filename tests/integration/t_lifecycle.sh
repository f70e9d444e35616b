#!/usr/bin/env bash
# t_lifecycle.sh - what happens to the records when programs end badly:
# exit without PQfinish (leak report), kill -9 (the reaper folds the
# counters in exactly once), a policy that does not load (fail-closed), a
# segment others could read (refused, the program still works).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cc -Wall -Werror -I"$(pkg-config --variable=includedir libpq)" \
	"$PQT_ROOT/tests/clients/c_client.c" -o "$T/c_client" -lpq -ldl

# 1. Exit without PQfinish: each connection is reported and counted leaked.
POL=$(policy_new leak "[shim]
log = $T/leak.log")
echo | C_CLIENT_NO_FINISH=1 "$PQSHIM" run -p "$POL" -- "$T/c_client" >/dev/null
S=$(stat_json "$POL")
assert_eq "$(jq '.connections | length' <<<"$S")" 0 "records released at exit"
assert_eq "$(jq .totals.leaked <<<"$S")" 4 "four connections never closed"
assert_eq "$(jq .totals.queries <<<"$S")" 25 "their statements still counted"
assert_eq "$(grep -c 'was never closed' "$T/leak.log")" 4 "leak report lines"
assert_match "$(head -1 "$T/leak.log")" '^pqshim\[[0-9]+\]: connection to host=.* opened by thread [0-9]+ was never closed' "leak line"

# 2. kill -9 with connections open: the next reader reaps the dead process.
POL=$(policy_new kill)
held_start c "$PQSHIM" run -p "$POL" -- "$T/c_client"
pid=$RUN
held_ready c READY
assert_eq "$(jqp "$POL" '.connections | length')" 4 "four live records"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
held_close c
S=$(stat_json "$POL")
assert_eq "$(jq '.connections | length' <<<"$S")" 0 "reaped: no record of a dead process"
assert_eq "$(jq '.processes | length' <<<"$S")" 0 "reaped: no process record"
assert_eq "$(jq .totals.queries <<<"$S")" 25 "the dead process's statements folded into the totals"
assert_eq "$(jq .totals.leaked <<<"$S")" 4 "its connections counted as leaked"
assert_eq "$(jqp "$POL" .totals.queries)" 25 "folded exactly once"

# 3. A policy that does not load: connects are refused (fail-closed), with
# a pqshim: message naming the error; stat shows the error.
BAD=$T/bad.ini
printf '[shim]\nsegment = pqt-bad-%s\n[cap]\nmax_active = lots\n' "$$" >"$BAD"
chmod 600 "$BAD"
at_exit "rm -f /dev/shm/pqshim.$(id -u).pqt-bad-$$"
set +e
out=$(LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$BAD" "$PSQL" -X -c 'select 1' 2>&1)
rc=$?
set -e
assert_eq "$rc" 2 "psql could not connect"
assert_match "$out" 'pqshim: connection refused: the policy is unusable: .*bad.ini:4: bad value "lots" for max_active' "refusal text"
assert_match "$(jqp "$BAD" .policy.error)" 'bad.ini:4: bad value' "stat shows the policy error"
assert_eq "$(jqp "$BAD" .totals.refused)" 1 "refusal counted"
# `pqshim run` refuses to start a program under a policy that does not load.
if "$PQSHIM" run -p "$BAD" -- true 2>"$T/run.err"; then fail "pqshim run accepted a bad policy"; fi
assert_match "$(cat "$T/run.err")" 'bad.ini:4: bad value' "pqshim run says why"

# ... unless the broken policy itself says on_error = fail-open: then the
# program runs, tracked, with nothing enforced, and stat shows the error.
OPEN=$T/open.ini
printf '[shim]\nsegment = pqt-open-%s\non_error = fail-open\n[cap]\nmax_active = lots\n' "$$" >"$OPEN"
chmod 600 "$OPEN"
at_exit "rm -f /dev/shm/pqshim.$(id -u).pqt-open-$$"
out=$(LD_PRELOAD="$PQSHIM_LIB" PQSHIM_POLICY="$OPEN" "$PSQL" -X -At -c 'select 42' 2>&1)
assert_match "$out" '42' "fail-open: the program works"
assert_match "$out" 'nothing enforced until it is fixed \(on_error = fail-open\)' "fail-open: the shim says so"
assert_match "$(jqp "$OPEN" .policy.error)" 'open.ini:5: bad value' "fail-open: stat shows the error"

# 4. A segment file others can read is not used: under fail-closed (the
# default) the program is refused, told why (t_seg_group.sh has the rest).
POL=$(policy_new perm)
seg=$(sed -n 's/^segment = //p' "$POL")
path=/dev/shm/pqshim.$(id -u).$seg
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$POL" /usr/lib/postgresql/15/bin/pg_isready -q # the shim makes it
chmod 0644 "$path"
set +e
out=$("$PQSHIM" run -p "$POL" -- "$PSQL" -X -At -c 'select 42' 2>&1)
rc=$?
set -e
assert_eq "$rc" 2 "the program cannot connect"
assert_match "$out" "pqshim: connection refused: segment $path refused: .*mode 0644, a regular file; expected .* mode 0600" \
	"the shim says why"
