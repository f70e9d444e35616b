#!/usr/bin/env bash
# tests/check.sh - `make check`: the unit tests (built with ASan+UBSan, given
# as arguments by the Makefile), then the integration tests against a real
# primary and replica.  Ends with one line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0 failed=0
echo "== unit tests (AddressSanitizer + UndefinedBehaviorSanitizer)"
for t in "$@"; do
	out=$("$t" 2>&1); rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' <<<"$out" | tail -1)
	p=${p:-0} f=${f:-0}
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi   # crashed or sanitizer report
	passed=$((passed + p)) failed=$((failed + f))
	if [ "$f" != 0 ]; then
		echo "FAIL $(basename "$t")"; echo "$out" | tail -40
	else
		echo "PASS $(basename "$t") ($p tests)"
	fi
done

echo "== layers (make layers: no upward #include in shim/ and policy/)"
if out=$(bash tools/check_layers.sh 2>&1); then
	passed=$((passed + 1)); echo "PASS layers"
else
	failed=$((failed + 1)); echo "FAIL layers"; echo "$out"
fi

echo "== integration tests (PostgreSQL primary + streaming replica)"
log=$(mktemp)
bash tests/integration/run.sh 2>&1 | tee "$log"
out=$(tail -1 "$log")
rm -f "$log"
ip=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
if=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
if [ -z "$ip" ]; then ip=0 if=1; echo "integration runner did not report"; fi
passed=$((passed + ip)) failed=$((failed + if))

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
