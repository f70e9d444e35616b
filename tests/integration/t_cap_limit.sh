#!/usr/bin/env bash
# t_cap_limit.sh: [cap] max_active = 3 holds across processes and threads, as
# the SERVER sees it, and costs no throughput.
#  - three pgbench processes of 4 clients each (-c 4 -j 4; two run
#    `select pg_sleep(0.01)`, one BEGIN; pg_sleep; COMMIT) and one psycopg2
#    process of 8 threads (tests/clients/py_cap_load.py, BEGIN; pg_sleep;
#    COMMIT), 20 clients in all, run at once under one policy. A sampler
#    WITHOUT the shim (py_cap_load.py sample) reads pg_stat_activity every
#    20 ms: the number of their backends busy at one instant ('active' or
#    'idle in transaction', counted strictly, see py_cap_load.py) never
#    exceeds 3 and reaches 3 (the cap is used to the full). `pqshim stat`
#    polled meanwhile never shows more than 3 active and shows waiters;
#    every program exits 0; afterwards .cap.waits > 0, no timeouts, nothing
#    active or waiting.
#  - throughput: on `select pg_sleep(0.01)`, `pgbench -c 12 -j 12 -T 3` under
#    max_active = 3 reaches at least 85% of the tps of `pgbench -c 3 -j 3 -T 3`
#    run directly (runs alternate A B A B; the sums are compared).
# (-j equals -c: one pgbench thread multiplexing several connections shares
# its slot when the cap is full, a documented limitation.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
CAP=3
POL=$(policy_new limit "[cap]
max_active = $CAP
wait_timeout = 20s
")
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$POL" /usr/lib/postgresql/15/bin/pg_isready -q # the shim makes the segment: the tool never does
printf 'select pg_sleep(0.01);\n' >"$T/sleep.sql"
printf 'begin;\nselect pg_sleep(0.01);\ncommit;\n' >"$T/xact.sql"

# --- the sampler: no shim, its own application_name (not matched) ---------
sampler_start t_cap_limit_

# --- 20 clients at once -------------------------------------------------------
pids=() names=()
for i in 1 2 3; do
	script=$T/sleep.sql
	[ "$i" = 3 ] && script=$T/xact.sql
	PGAPPNAME=t_cap_limit_pgb$i "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -f "$script" \
		-c 4 -j 4 -T 4 >"$T/pgb$i.out" 2>"$T/pgb$i.err" &
	pids+=("$!") names+=("pgb$i")
	bg_track "$!"
done
"$PQSHIM" run -p "$POL" -- "$PY" "$LOAD" load --app t_cap_limit_py --threads 8 \
	--seconds 4 --sleep 0.01 --mode xact >"$T/py.out" 2>"$T/py.err" &
pids+=("$!") names+=(py)
bg_track "$!"

# pqshim stat while they run: the shim's own count, and its waiters
stat_max=0 stat_waiting_seen=0 polls=0
while _pqt_alive "${pids[@]}"; do
	read -r a w < <(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')
	[ "$a" -gt "$stat_max" ] && stat_max=$a
	[ "$w" -gt 0 ] && stat_waiting_seen=1
	polls=$((polls + 1))
	sleep 0.1
done
for k in "${!pids[@]}"; do
	rc=0
	wait "${pids[$k]}" || rc=$?
	assert_eq "$rc" 0 "${names[$k]}: exit status (stderr: $(tail -5 "$T/${names[$k]}.err"))"
done
for i in 1 2 3; do
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/pgb$i.out")
	assert_ge "${tx:-0}" 1 "pgb$i: transactions processed"
	note "pgb$i: $tx transactions"
done
grep -q '^COUNTS ' "$T/py.out" || fail "py: no COUNTS line: $(cat "$T/py.out")"
note "py: per-thread transactions $(sed -n 's/^COUNTS //p' "$T/py.out")"
assert_eq "$(sed -n 's/^COUNTS //p' "$T/py.out" | jq 'map(select(. < 1)) | length')" 0 \
	"py: threads that completed no transaction"

sampler_stop
note "server's view: $S"
note "pqshim stat: $polls polls, max .cap.active $stat_max, waiters seen $stat_waiting_seen"
assert_ge "$(jq .samples <<<"$S")" 100 "sampler: samples taken"
assert_le "$(jq .peak_strict <<<"$S")" "$CAP" "server: busy backends at one instant (peak)"
assert_eq "$(jq .peak_strict <<<"$S")" "$CAP" "server: peak busy backends (the cap used to the full)"
assert_le "$stat_max" "$CAP" "pqshim stat: .cap.active while running"
assert_eq "$stat_waiting_seen" 1 "pqshim stat: .cap.waiting > 0 seen while running"

assert_eq "$(jqp "$POL" '.cap.max_active')" "$CAP" ".cap.max_active"
assert_ge "$(jqp "$POL" '.cap.waits')" 1 ".cap.waits"
assert_eq "$(jqp "$POL" '.cap.timeouts')" 0 ".cap.timeouts"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" ".cap.active .cap.waiting after the run"
note "cap: $(jqp "$POL" '.cap | {waits, timeouts, wait_ms_p50, wait_ms_p99} | tostring')"

# --- throughput: 12 clients on 3 slots against 3 clients without the shim ---
TPOL=$(policy_new tput "[cap]
max_active = $CAP
")
tps() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$1"; }
direct_sum=0 capped_sum=0 n=0
for round in 1 2; do
	n=$((n + 1))
	rc=0
	env -u LD_PRELOAD -u PQSHIM_POLICY PGAPPNAME=t_cap_tput_direct "$PGBENCH" -n \
		-f "$T/sleep.sql" -c 3 -j 3 -T 3 >"$T/direct$n.out" 2>"$T/direct$n.err" || rc=$?
	assert_eq "$rc" 0 "direct pgbench run $n (stderr: $(tail -3 "$T/direct$n.err"))"
	d=$(tps "$T/direct$n.out")
	_pqt_num "$d" || fail "direct run $n: no tps: $(cat "$T/direct$n.out")"
	rc=0
	PGAPPNAME=t_cap_tput_capped "$PQSHIM" run -p "$TPOL" -- "$PGBENCH" -n \
		-f "$T/sleep.sql" -c 12 -j 12 -T 3 >"$T/capped$n.out" 2>"$T/capped$n.err" || rc=$?
	assert_eq "$rc" 0 "capped pgbench run $n (stderr: $(tail -3 "$T/capped$n.err"))"
	c=$(tps "$T/capped$n.out")
	_pqt_num "$c" || fail "capped run $n: no tps: $(cat "$T/capped$n.out")"
	echo "round $round: direct -c 3: $d tps; under max_active = 3, -c 12: $c tps"
	direct_sum=$(awk -v a="$direct_sum" -v b="$d" 'BEGIN { print a + b }')
	capped_sum=$(awk -v a="$capped_sum" -v b="$c" 'BEGIN { print a + b }')
done
ratio=$(awk -v c="$capped_sum" -v d="$direct_sum" 'BEGIN { printf "%.3f", c / d }')
echo "throughput: capped/direct = $capped_sum/$direct_sum = $ratio"
assert_ge "$ratio" 0.85 "tps of 12 clients on 3 slots / tps of 3 direct clients"
assert_ge "$(jqp "$TPOL" '.cap.waits')" 1 "throughput run: .cap.waits (the cap was in the way)"
assert_eq "$(jqp "$TPOL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" \
	"throughput run: .cap.active .cap.waiting after"
echo "ok: max_active = 3 across 4 processes / 20 clients (server peak $(jq .peak_strict <<<"$S")), throughput ratio $ratio"
