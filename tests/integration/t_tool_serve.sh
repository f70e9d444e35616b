#!/usr/bin/env bash
# t_tool_serve.sh: `pqshim serve` scraped over HTTP while pgbench runs under a
# cap of 2 (4 clients in 4 threads, transactions of 10 ms: the cap is always
# full and waits are counted).  Checks:
#  - GET /metrics: 200, Content-Type text/plain; version=0.0.4, valid text
#    format 0.0.4 line by line (promcheck.py: every non-comment line
#    `name{labels} value`, names pqshim_*, HELP and TYPE lines, counters
#    _total, histogram buckets with le ascending, cumulative, +Inf = _count),
#    the wait histogram with its buckets and a lane label, the same metric
#    families and types as `pqshim stat --prometheus`, and the figures
#    re-read at every request (the wait count grows between scrapes);
#  - GET /stat.json: application/json, parsed by python's json; its backends
#    are those pg_stat_activity shows for pgbench, and its cap.connections and
#    cap.active agree with `stat --json` taken beside it;
#  - 20 scrapes at once all answered, pgbench going on meanwhile;
#  - 404 on /nope, 405 on POST, HEAD answered with headers and no body;
#  - after the run, /metrics and /stat.json give exactly stat's figures;
#  - the HTTP library is in the tool only, never in libpqshim.so; make
#    install (DESTDIR, PREFIX) installs the systemd unit and the preload
#    drop-in, both naming the installed files (systemd-analyze verify);
#  - the segment removed under it: 503 and no segment made in its place;
#    SIGTERM ends it with status 0; `serve -s` a segment that does not exist
#    exits 1 at once and creates nothing in /dev/shm.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"
command -v curl >/dev/null || fail "curl is missing (tools/setup.sh installs it)"
PROMCHECK=$(dirname "$0")/promcheck.py
APP=t_tool_serve
POL=$(policy_new tool_serve "[cap]
max_active = 2
wait_timeout = 30s
")
SEG=$(tail -n 1 "$T/.segments")

# --- usage
"$PQSHIM" serve --help | grep -q '^usage: pqshim serve' || fail "serve --help"
rc=0
"$PQSHIM" serve --bogus >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "serve with an unknown option"
rc=0
"$PQSHIM" serve --listen nonsense >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "serve --listen without a port"

# --- the HTTP library is the tool's, never the preloaded library's
readelf -d "$PQSHIM" | grep -q 'NEEDED.*libmicrohttpd' || fail "build/pqshim is not linked with libmicrohttpd"
! readelf -d "$PQSHIM_LIB" | grep -qi 'microhttpd' || fail "libpqshim.so needs libmicrohttpd"
! ldd "$PQSHIM_LIB" | grep -qi 'microhttpd' || fail "libpqshim.so loads libmicrohttpd"

# --- a workload that keeps the cap full
"$PGBENCH" -i -q -s 1 >"$T/init.log" 2>&1 || fail "pgbench -i: $(tail -3 "$T/init.log")"
printf 'begin;\nselect pg_sleep(0.01);\nselect abalance from pgbench_accounts where aid = 1;\ncommit;\n' >"$T/xact.sql"
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 4 -j 4 -T 12 -f "$T/xact.sql" \
	>"$T/bench.out" 2>"$T/bench.err" &
BENCH=$!
bg_track "$BENCH"
seg_file=/dev/shm/pqshim.$(id -u).$SEG
wait_until 10 test -f "$seg_file" || fail "pgbench under pqshim made no segment $seg_file"

# --- serve, on a port of its choosing (printed at start)
"$PQSHIM" serve -p "$POL" --listen 127.0.0.1:0 >"$T/serve.out" 2>"$T/serve.err" &
SERVE=$!
bg_track "$SERVE"
started() { grep -q '^pqshim serve: segment .* on http://127\.0\.0\.1:[0-9]*/metrics' "$T/serve.out"; }
wait_until 10 started || fail "serve did not start: $(cat "$T/serve.out" "$T/serve.err")"
grep -q "segment $SEG " "$T/serve.out" || fail "serve names another segment: $(cat "$T/serve.out")"
BASE=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$T/serve.out" | head -n 1)

# get PATH FILE [CURL ARGS]: fetch into FILE (body) and FILE.h (headers);
# prints the status code.
get() {
	local path=$1 file=$2
	shift 2
	curl -sS --max-time 10 -o "$file" -D "$file.h" -w '%{http_code}' "$@" "$BASE$path"
}
header() { # FILE NAME: the value of header NAME in FILE.h
	tr -d '\r' <"$1.h" | awk -v n="$(tr 'A-Z' 'a-z' <<<"$2")" -F': ' 'tolower($1) == n { print $2 }'
}
# pv FILE NAME [JQ-FILTER-ON-LABELS]: the value of one sample of FILE.json
pv() {
	jq -r --arg n "$2" "[.samples[] | select(.name == \$n) | select(${3:-true}) | .value] |
		if length == 1 then .[0] else error(\"\(length) samples\") end" "$1.json"
}
metrics() { # FILE: GET /metrics into FILE, checked, parsed into FILE.json
	local code
	code=$(get /metrics "$1") || fail "GET /metrics: curl failed"
	assert_eq "$code" 200 "GET /metrics status"
	assert_eq "$(header "$1" Content-Type)" "text/plain; version=0.0.4" "/metrics Content-Type"
	"$PY" "$PROMCHECK" "$1" >"$1.json" || fail "/metrics is not valid text format ($1)"
}
statjson() { # FILE: GET /stat.json into FILE, checked with python's json
	local code
	code=$(get /stat.json "$1") || fail "GET /stat.json: curl failed"
	assert_eq "$code" 200 "GET /stat.json status"
	assert_eq "$(header "$1" Content-Type)" "application/json" "/stat.json Content-Type"
	"$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" ||
		fail "/stat.json does not parse as JSON ($1)"
}

# --- /metrics while pgbench runs
waited() { [ "$(jqp "$POL" .cap.waits)" -gt 0 ]; }
wait_until 10 waited || fail "no wait counted with 4 clients under max_active = 2"
metrics "$T/m1.prom"
grep -q '^# TYPE pqshim_wait_seconds histogram$' "$T/m1.prom" || fail "no # TYPE line for the wait histogram"
assert_ge "$(grep -c '^# TYPE pqshim_' "$T/m1.prom")" 20 "# TYPE lines"
assert_ge "$(grep -c '^pqshim_wait_seconds_bucket{lane="default",le="[0-9.]*"} [0-9]*$' "$T/m1.prom")" 10 \
	"finite buckets of the wait histogram"
grep -q '^pqshim_wait_seconds_bucket{lane="default",le="+Inf"} [0-9]*$' "$T/m1.prom" || fail "no +Inf bucket"
# Line by line, independently of promcheck: comments, or name{labels} value.
bad=$(grep -Ev '^# (HELP|TYPE) pqshim_[a-z_]+ .+$|^pqshim_[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? [0-9.e+-]+$' "$T/m1.prom" || true)
[ -z "$bad" ] || fail "lines of /metrics that are neither comment nor sample: $bad"
W1=$(pv "$T/m1.prom" pqshim_wait_seconds_count)
assert_ge "$W1" 1 "wait histogram _count mid-run"
assert_eq "$(pv "$T/m1.prom" pqshim_max_active)" 2 "pqshim_max_active"
assert_le "$(pv "$T/m1.prom" pqshim_active)" 2 "pqshim_active"
assert_eq "$(pv "$T/m1.prom" pqshim_process_connections ".labels.pid == \"$BENCH\"")" 4 \
	"pqshim_process_connections of pgbench"
# The same writer as stat --prometheus: the same families, of the same types.
"$PQSHIM" stat -p "$POL" --prometheus >"$T/stat.prom"
"$PY" "$PROMCHECK" "$T/stat.prom" >"$T/stat.prom.json" || fail "stat --prometheus invalid"
assert_eq "$(jq -c '.types' "$T/m1.prom.json")" "$(jq -c '.types' "$T/stat.prom.json")" \
	"metric families and types of /metrics against stat --prometheus"
# Read afresh at every request: the count of waits moves on.
grown() {
	metrics "$T/m2.prom"
	[ "$(pv "$T/m2.prom" pqshim_wait_seconds_count)" -gt "$W1" ]
}
wait_until 10 grown || fail "the wait count did not grow between scrapes (stale segment?)"

# --- /stat.json while pgbench runs, against stat --json and the server
ours() { jq -r "[.connections[] | select(.pid == $BENCH) | .backend_pid] | sort | map(tostring) | join(\",\")" "$1"; }
theirs() { sql_primary "select coalesce(string_agg(pid::text, ',' order by pid), '')
	from pg_stat_activity where application_name = '$APP'"; }
agree() {
	statjson "$T/j.json"
	local a b
	a=$(ours "$T/j.json") b=$(theirs)
	[ -n "$a" ] && [ "$(tr ',' '\n' <<<"$a" | wc -l)" = 4 ] && [ "$a" = "$b" ] ||
		fail "/stat.json lists backends '$a', the server '$b'"
}
wait_until 10 agree || fail "/stat.json and pg_stat_activity never agreed on pgbench's backends"
for i in 1 2 3; do
	statjson "$T/j$i.json"
	stat_json "$POL" >"$T/s$i.json"
	assert_eq "$(jq -c '[keys, (.cap | keys)]' "$T/j$i.json")" "$(jq -c '[keys, (.cap | keys)]' "$T/s$i.json")" \
		"$i: fields of /stat.json against stat --json"
	assert_eq "$(jq .cap.connections "$T/j$i.json")" "$(jq .cap.connections "$T/s$i.json")" \
		"$i: cap.connections of /stat.json against stat --json"
	assert_eq "$(jq .cap.connections "$T/j$i.json")" 4 "$i: cap.connections (pgbench's 4)"
	assert_eq "$(ours "$T/j$i.json")" "$(ours "$T/s$i.json")" "$i: pgbench's backends in both"
	for f in "$T/j$i.json" "$T/s$i.json"; do
		assert_le "$(jq .cap.active "$f")" 2 "$i: cap.active ($f)"
		assert_ge "$(jq .cap.active "$f")" 0 "$i: cap.active ($f)"
	done
	assert_eq "$(jq .cap.max_active "$T/j$i.json")" 2 "$i: cap.max_active"
done

# --- 20 scrapes at once, all answered; pgbench keeps going meanwhile
X0=$(jqp "$POL" .totals.xacts)
for i in $(seq 20); do
	if ((i % 2)); then path=/metrics; else path=/stat.json; fi
	(get "$path" "$T/par$i" >"$T/par$i.code" 2>"$T/par$i.err" || echo "curl-failed" >>"$T/par$i.code") &
	pids[i]=$!
done
for i in $(seq 20); do wait "${pids[i]}" || true; done
for i in $(seq 20); do
	assert_eq "$(cat "$T/par$i.code")" 200 "parallel scrape $i ($(cat "$T/par$i.err"))"
	if ((i % 2)); then
		"$PY" "$PROMCHECK" "$T/par$i" >/dev/null || fail "parallel scrape $i: invalid /metrics"
	else
		"$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$T/par$i" ||
			fail "parallel scrape $i: /stat.json not JSON"
	fi
done
moved() { [ "$(jqp "$POL" .totals.xacts)" -gt "$X0" ]; }
wait_until 5 moved || fail "pgbench made no progress around the parallel scrapes"

# --- other paths, other methods, HEAD
assert_eq "$(get /nope "$T/nope")" 404 "GET /nope"
assert_eq "$(get /metrics/x "$T/nope2")" 404 "GET /metrics/x"
assert_eq "$(get /metrics "$T/post" -X POST --data 'a=1')" 405 "POST /metrics"
assert_eq "$(header "$T/post" Allow)" "GET, HEAD" "Allow header of a 405"
# HEAD on a raw socket: the headers, Content-Length, and not one byte more.
cat >"$T/head.py" <<'EOF'
import socket, sys
host, port = sys.argv[1].split('//')[1].split(':')
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, sep, body = data.partition(b'\r\n\r\n')
lines = head.decode().split('\r\n')
hdrs = {k.lower(): v for k, v in (l.split(': ', 1) for l in lines[1:])}
print(lines[0].split(' ')[1], hdrs.get('content-length', '0'), len(body))
EOF
for path in /metrics /stat.json; do
	read -r code len body < <("$PY" "$T/head.py" "$BASE" "$path")
	assert_eq "$code" 200 "HEAD $path status"
	assert_ge "$len" 100 "HEAD $path Content-Length"
	assert_eq "$body" 0 "HEAD $path: bytes after the headers"
done

# --- after the run: nothing moves, the figures are exactly stat's
rc=0
wait "$BENCH" || rc=$?
assert_eq "$rc" 0 "pgbench exit status ($(tail -3 "$T/bench.err"))"
metrics "$T/end.prom"
statjson "$T/end.json"
S=$(stat_json "$POL")
for pair in "pqshim_wait_seconds_count .cap.waits" "pqshim_waits_total .cap.waits" \
	"pqshim_xacts_total .totals.xacts" "pqshim_queries_total .totals.queries" \
	"pqshim_connections .cap.connections" "pqshim_active .cap.active"; do
	set -- $pair
	assert_eq "$(pv "$T/end.prom" "$1")" "$(jq "$2" <<<"$S")" "/metrics $1 against stat --json $2"
done
assert_eq "$(pv "$T/end.prom" pqshim_connections)" 0 "no connection left"
assert_eq "$(jq -c '[.cap.waits, .cap.histogram, .totals]' "$T/end.json")" \
	"$(jq -c '[.cap.waits, .cap.histogram, .totals]' <<<"$S")" "/stat.json against stat --json after the run"
"$PQSHIM" stat -p "$POL" --prometheus >"$T/end-stat.prom"
diff <(grep -v '^pqshim_process' "$T/end.prom") <(grep -v '^pqshim_process' "$T/end-stat.prom") >"$T/end.diff" ||
	fail "/metrics and stat --prometheus differ after the run: $(cat "$T/end.diff")"

# --- make install: the unit and the drop-in, with the installed paths
make -C "$PQT_ROOT" --no-print-directory install DESTDIR="$T/dest" PREFIX=/opt/pqt >"$T/install.log" 2>&1 ||
	fail "make install DESTDIR=... failed: $(tail -5 "$T/install.log")"
unit=$T/dest/opt/pqt/lib/systemd/system/pqshim-serve.service
dropin=$T/dest/opt/pqt/share/pqshim/pqshim-preload.conf
[ -f "$unit" ] && [ -f "$dropin" ] || fail "make install did not install $unit and $dropin"
grep -q '^ExecStart=/opt/pqt/bin/pqshim serve ' "$unit" || fail "unit's ExecStart: $(grep ExecStart "$unit")"
grep -q '^Environment=LD_PRELOAD=/opt/pqt/lib/libpqshim\.so PQSHIM_POLICY=' "$dropin" ||
	fail "drop-in's Environment: $(grep Environment "$dropin")"
[ -x "$T/dest/opt/pqt/bin/pqshim" ] && [ -f "$T/dest/opt/pqt/lib/libpqshim.so" ] || fail "binaries not installed"
if command -v systemd-analyze >/dev/null; then
	# Installed for real into a prefix, so that ExecStart's binary exists.
	make -C "$PQT_ROOT" --no-print-directory install PREFIX="$T/prefix" >"$T/install2.log" 2>&1 ||
		fail "make install PREFIX=... failed"
	systemd-analyze verify --man=no "$T/prefix/lib/systemd/system/pqshim-serve.service" \
		>"$T/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$T/verify.log")"
else
	note "no systemd-analyze: the unit file was not verified"
fi

# --- the segment removed under it: 503, and nothing made in its place
# (both depend on snap_open never creating a segment)
mv "$seg_file" "$T/segment.saved"
code=$(get /metrics "$T/gone") || fail "GET /metrics with the segment removed: curl failed"
assert_eq "$code" 503 "GET /metrics with the segment removed"
[ ! -e "$seg_file" ] || fail "serve made a new $seg_file"
mv "$T/segment.saved" "$seg_file"
metrics "$T/back.prom"
assert_eq "$(pv "$T/back.prom" pqshim_xacts_total)" "$(jq .totals.xacts <<<"$S")" "the segment back: its figures again"

# --- SIGTERM: a clean exit
kill -TERM "$SERVE"
gone() { ! kill -0 "$SERVE" 2>/dev/null; }
wait_until 5 gone || fail "serve still running 5 s after SIGTERM"
rc=0
wait "$SERVE" || rc=$?
assert_eq "$rc" 0 "serve's exit status after SIGTERM"
! curl -s --max-time 2 -o /dev/null "$BASE/metrics" || fail "still answering after SIGTERM"

# --- a segment that does not exist: exit 1 at once, nothing created
ghost=pqt-ghost-$$-$RANDOM
echo "$ghost" >>"$T/.segments"   # removed at exit if it appears anyway
start=${EPOCHREALTIME/./}
rc=0
timeout 5 "$PQSHIM" serve -s "$ghost" --listen 127.0.0.1:0 >"$T/ghost.out" 2>"$T/ghost.err" || rc=$?
took=$(((${EPOCHREALTIME/./} - start) / 1000))
assert_eq "$rc" 1 "serve -s on a missing segment ($(cat "$T/ghost.err"))"
assert_le "$took" 2000 "ms until serve -s on a missing segment gave up"
found=$(ls /dev/shm | grep -F "$ghost" || true)
[ -z "$found" ] || fail "serve -s $ghost created $found in /dev/shm"
