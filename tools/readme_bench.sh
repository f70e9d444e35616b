#!/usr/bin/env bash
# tools/readme_bench.sh - copy tests/bench/results.md into README.md between
# the bench markers (run after `make bench`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python3 - "$root/README.md" "$root/tests/bench/results.md" <<'PY'
import sys
readme, results = sys.argv[1], sys.argv[2]
s = open(readme).read()
r = open(results).read().strip()
a = s.index("<!-- bench:begin -->") + len("<!-- bench:begin -->")
b = s.index("<!-- bench:end -->")
open(readme, "w").write(s[:a] + "\n" + r.replace("### ", "#### ") + "\n" + s[b:])
PY
