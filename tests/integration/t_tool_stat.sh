#!/usr/bin/env bash
# t_tool_stat.sh: `pqshim stat` (table, --json, --prometheus) on a live
# workload: pgbench with 4 clients in 4 threads under a cap of 2 active
# transactions, plus a psql session held open on a fifo whose program name
# holds a double quote, a backslash and a newline. Checks that the JSON has
# SPEC.md's fields and agrees with the server (the backends listed are the
# backends pg_stat_activity shows, by pid), that the cap figures hold
# (active <= max_active, waits counted into the histogram, p50 <= p99), that
# the Prometheus output is valid text format 0.0.4 (every line parsed by a
# small parser below: HELP/TYPE for every metric, counters end in _total,
# histogram buckets cumulative up to le="+Inf" = _count, label values
# escaped) and agrees with the JSON, and that the table shows the same.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

APP=t_tool_stat
POL=$(policy_new tool_stat "[cap]
max_active = 2
max_connections = 20
wait_timeout = 30s
")
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$POL" /usr/lib/postgresql/15/bin/pg_isready -q # the shim makes the segment: the tool never does

# --- usage
"$PQSHIM" stat --help | grep -q '^usage: pqshim stat' || fail "stat --help"
rc=0
"$PQSHIM" stat --bogus >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "stat with an unknown option"

# --- an empty segment: every field of SPEC.md, zeros
S=$(stat_json "$POL")
for f in '.policy.path' '.policy.generation' '.policy.read_only' '.policy.error' \
	'.cap.scope' '.cap.max_active' '.cap.active' '.cap.waiting' '.cap.max_connections' \
	'.cap.connections' '.cap.waits' '.cap.timeouts' '.cap.wait_ms_p50' '.cap.wait_ms_p99' \
	'.totals.queries' '.totals.xacts' '.totals.redirects' '.totals.migrations' \
	'.totals.cross_thread_uses' '.totals.refused' '.processes' '.connections'; do
	jq -e "$f | type != \"null\" or (\"$f\" == \".policy.error\")" <<<"$S" >/dev/null ||
		fail "stat --json lacks $f: $S"
done
assert_eq "$(jq -r '.policy.error' <<<"$S")" null "policy.error of a good policy"
assert_eq "$(jq -r '.policy.read_only' <<<"$S")" false "policy.read_only"
assert_eq "$(jq -r '.policy.path' <<<"$S")" "$(realpath "$POL")" "policy.path"
assert_eq "$(jq -r '.cap.scope' <<<"$S")" host "cap.scope (default)"
assert_eq "$(jq -r '[.cap.wait_ms_p50, .cap.wait_ms_p99, .cap.waits] | map(tostring) | join(" ")' <<<"$S")" \
	"0 0 0" "no waits yet: p50 p99 waits"

# --- the Prometheus parser (promcheck.py): prints the samples as JSON, or fails naming the line
# prom FILE: parse the output of stat --prometheus into FILE.json (or fail).
prom() {
	"$PQSHIM" stat -p "$POL" --prometheus >"$1" || fail "stat --prometheus failed"
	"$PY" "$(dirname "$0")/promcheck.py" "$1" >"$1.json" || fail "stat --prometheus: invalid output ($1)"
}
# pv FILE NAME [JQ-FILTER-ON-LABELS]: the value of one sample
pv() {
	jq -r --arg n "$2" "[.samples[] | select(.name == \$n) | select(${3:-true}) | .value] |
		if length == 1 then .[0] else error(\"\(length) samples\") end" "$1.json"
}
prom "$T/empty.prom"
# The cap's maximum is set in the segment by the first program that loads the
# policy (here pg_isready, which made the segment: the tool never does).
assert_eq "$(pv "$T/empty.prom" pqshim_max_active)" 2 "pqshim_max_active set by the segment's maker"
assert_eq "$(pv "$T/empty.prom" pqshim_wait_seconds_count)" 0 "no waits yet"

# --- a workload: pgbench, 4 clients in 4 threads, a cap of 2.  (One client
# per thread: with two per thread, pgbench's single-threaded event loop can
# block in one client's slot wait while its other client holds the row locks
# the slot holders wait for - a deadlock until wait_timeout, a cap matter.)
# It runs until the checks below are done, however slow the machine: then
# SIGALRM, which is how pgbench's -T ends a run (its summary and exit 0).
"$PGBENCH" -i -q -s 1 >"$T/init.log" 2>&1 || fail "pgbench -i: $(tail -3 "$T/init.log")"
PGAPPNAME=$APP "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -c 4 -j 4 -T 300 -M prepared \
	>"$T/bench.out" 2>"$T/bench.err" &
BENCH=$!
bg_track "$BENCH"

# The backends stat lists for pgbench are the backends the server has.
ours() { stat_json "$POL" | jq -r "[.connections[] | select(.pid == $BENCH) | .backend_pid] |
	sort | map(tostring) | join(\",\")"; }
theirs() { server_activity "$APP" pid | paste -sd,; }
agree() {
	local a b
	a=$(ours) b=$(theirs)
	[ -n "$a" ] && [ "$(tr ',' '\n' <<<"$a" | wc -l)" = 4 ] && [ "$a" = "$b" ] ||
		fail "stat lists backends '$a', the server '$b'"
}
wait_until 10 agree || fail "stat and pg_stat_activity never agreed on pgbench's backends"

# While it runs: the cap is respected and shown, the fields are all there.
waited() { [ "$(jqp "$POL" .cap.waits)" -gt 0 ]; }
wait_until 10 waited || fail "no wait counted with 4 clients under max_active = 2"
for i in 1 2 3 4 5; do
	S=$(stat_json "$POL")
	assert_eq "$(jq -r '[.cap.scope, .cap.max_active, .cap.max_connections] | map(tostring) |
		join(" ")' <<<"$S")" "host 2 20" "$i: cap scope max_active max_connections"
	assert_le "$(jq .cap.active <<<"$S")" 2 "$i: cap.active"
	assert_le "$(jq '[.connections[] | select(.slot == "held")] | length' <<<"$S")" 2 \
		"$i: connections holding a slot"
	assert_eq "$(jq -r '[.connections[].slot | select(. != "none" and . != "held" and
		. != "waiting" and . != "shared")] | length' <<<"$S")" 0 "$i: slot words"
	assert_eq "$(jq -r "[.connections[] | select(.pid == $BENCH)] | length" <<<"$S")" 4 \
		"$i: pgbench's connections"
	assert_eq "$(jq -r "[.processes[] | select(.pid == $BENCH) | .program, .connections,
		(.waits | type), (.timeouts | type), (.wait_ms | type)] | map(tostring) | join(\" \")" \
		<<<"$S")" "pgbench 4 number number number" "$i: pgbench's process record"
	assert_eq "$(jq "[.processes[] | select(.pid == $BENCH) | .threads][0]" <<<"$S")" 4 \
		"$i: pgbench's threads (-j 4)"
	# Every existing field of a connection record is still there.
	assert_eq "$(jq -r '[.connections[] | ["pid", "tid", "threads", "threads_seen", "target",
		"state", "status", "queries", "xacts", "cross_thread_uses", "inherited", "backend_pid",
		"opened", "last_used", "server", "application_name", "slot"] - keys] | add // [] |
		unique | join(" ")' <<<"$S")" "" "$i: fields missing from connections[]"
	sleep 0.2
done
wait_until 5 agree || fail "stat and pg_stat_activity disagree later in the run"

# The table, mid-run: the cap line, the policy line, pgbench and its connections.
"$PQSHIM" stat -p "$POL" >"$T/table.txt"
assert_match "$(sed -n 1p "$T/table.txt")" '^cap host  active [0-2]/2 \[[#-]{2}\]  waiting [0-9]+  connections [0-9]+/20  waits [0-9]+  timeouts 0  wait p50 [0-9.]+ms p99 [0-9.]+ms$' \
	"table: cap line"
assert_match "$(sed -n 2p "$T/table.txt")" "^policy $(realpath "$POL") +generation [0-9]+ +read-write" \
	"table: policy line"
grep -Eq "^$BENCH +pgbench +[0-9]+ +4 +[0-9]+" "$T/table.txt" || fail "table: no pgbench line: $(cat "$T/table.txt")"
[ "$(grep -Ec '^    [0-9]+ +(idle|active|in_transaction|waiting|connecting) +direct ' "$T/table.txt")" = 4 ] ||
	fail "table: not 4 connection lines: $(cat "$T/table.txt")"

# Prometheus, mid-run: valid, and agreeing with the JSON where nothing moves.
prom "$T/mid.prom"
assert_eq "$(pv "$T/mid.prom" pqshim_max_active)" 2 "pqshim_max_active"
assert_eq "$(pv "$T/mid.prom" pqshim_max_connections)" 20 "pqshim_max_connections"
assert_le "$(pv "$T/mid.prom" pqshim_active)" 2 "pqshim_active"
assert_eq "$(pv "$T/mid.prom" pqshim_process_connections ".labels.pid == \"$BENCH\" and
	.labels.program == \"pgbench\"")" 4 "pqshim_process_connections{pid,program} of pgbench"
assert_eq "$(jq -r '.types.pqshim_wait_seconds' "$T/mid.prom.json")" histogram "wait time type"
assert_eq "$(jq -r '.types.pqshim_queries_total' "$T/mid.prom.json")" counter "queries type"

kill -0 "$BENCH" || fail "pgbench ended before the mid-run checks were done"
kill -ALRM "$BENCH"
rc=0
wait "$BENCH" || rc=$?
assert_eq "$rc" 0 "pgbench exit status ($(tail -3 "$T/bench.err"))"

# --- after the run: totals kept, waits in the histogram, quantiles ordered
S=$(stat_json "$POL")
assert_eq "$(jq '.connections | length' <<<"$S")" 0 "no connection left"
assert_eq "$(jq '.cap.active' <<<"$S")" 0 "no slot held"
assert_eq "$(jq '.cap.connections' <<<"$S")" 0 "no connection counted"
TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/bench.out")
assert_ge "$(jq .totals.xacts <<<"$S")" "$TX" "totals.xacts against pgbench's transactions"
W=$(jq .cap.waits <<<"$S")
assert_ge "$W" 1 "cap.waits"
assert_eq "$(jq '[.cap.histogram[].count] | add' <<<"$S")" "$W" "histogram holds every wait"
assert_eq "$(jq '.cap.timeouts' <<<"$S")" 0 "no timeout at 30s"
p50=$(jq .cap.wait_ms_p50 <<<"$S") p99=$(jq .cap.wait_ms_p99 <<<"$S")
assert_ge "$p50" 0.001 "wait_ms_p50 once there were waits"
assert_ge "$p99" "$p50" "wait_ms_p99 >= wait_ms_p50"
# p99 is the upper bound of the bucket holding the 99th percentile.
assert_eq "$(jq '.cap as $c | ($c.histogram | map(.count) | add) as $n |
	[foreach $c.histogram[] as $b (0; . + $b.count; [., $b.le_ms])] |
	map(select(.[0] >= ($n * 0.99 | ceil))) | .[0][1] == $c.wait_ms_p99' <<<"$S")" true \
	"wait_ms_p99 from the histogram"

prom "$T/end.prom"
assert_eq "$(pv "$T/end.prom" pqshim_waits_total)" "$W" "pqshim_waits_total = cap.waits"
assert_eq "$(pv "$T/end.prom" pqshim_wait_seconds_count)" "$W" "histogram _count = cap.waits"
assert_eq "$(pv "$T/end.prom" pqshim_queries_total)" "$(jq .totals.queries <<<"$S")" \
	"pqshim_queries_total = totals.queries"
assert_eq "$(pv "$T/end.prom" pqshim_xacts_total)" "$(jq .totals.xacts <<<"$S")" \
	"pqshim_xacts_total = totals.xacts"
awk -v s="$(pv "$T/end.prom" pqshim_wait_seconds_sum)" \
	-v ms="$(jq .cap.wait_ms_sum <<<"$S")" 'BEGIN { d = s * 1000 - ms; exit !(d < 0.01 && d > -0.01) }' ||
	fail "pqshim_wait_seconds_sum does not match cap.wait_ms_sum"

# --- a program whose name needs escaping, held open on a fifo
NAME=$'we"ird\\\nname'
cp "$PSQL" "$T/$NAME"
PGAPPNAME=${APP}_psql held_start psql "$PQSHIM" run -p "$POL" -- "$T/$NAME" -X -A -t -q \
	"dbname=pqt password=sekrit-tool-stat"
PSQLPID=$RUN
held_send psql 'select 1;'
held() { [ "$(jqp "$POL" "[.connections[] | select(.pid == $PSQLPID)] | length")" = 1 ]; }
wait_until 10 held || fail "the psql session never showed ($(cat "$T/psql.err"))"
S=$(stat_json "$POL")
assert_eq "$(jq -r ".processes[] | select(.pid == $PSQLPID) | .program" <<<"$S")" "$NAME" \
	"JSON program name with quote, backslash, newline"
assert_eq "$(jq -r ".connections[] | select(.pid == $PSQLPID) | .backend_pid" <<<"$S")" \
	"$(server_activity "${APP}_psql" pid)" \
	"backend_pid of the psql session"
[[ $S != *sekrit* && $S != *password* ]] || fail "stat --json shows a password"
prom "$T/name.prom"
assert_eq "$(jq -r "[.samples[] | select(.name == \"pqshim_process_connections\" and
	.labels.pid == \"$PSQLPID\") | .labels.program][0]" "$T/name.prom.json")" "$NAME" \
	"Prometheus program label, unescaped"
grep -qF 'program="we\"ird\\\nname"' "$T/name.prom" || fail "label not escaped as 0.0.4 says: $(grep "pid=\"$PSQLPID\"" "$T/name.prom" | head -1)"
"$PQSHIM" stat -p "$POL" >"$T/name.txt"
line=$(grep -E "^$PSQLPID +" "$T/name.txt" || true)
[[ $line == *'we"ird\?name'* ]] ||
	fail "table: the program name's newline not neutralised: $(cat "$T/name.txt")"
! grep -q sekrit "$T/name.prom" "$T/name.txt" || fail "a password in the output"
held_end psql 0
