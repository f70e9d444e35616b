#!/usr/bin/env bash
# t_cap_fairness.sh: waiting for a slot is first come, first served, across
# threads and processes: nobody starves.
# Eight client threads, in two psycopg2 processes of four
# (tests/clients/py_cap_load.py, each thread with its own connection, looping
# BEGIN; SELECT pg_sleep(0.01); COMMIT and counting completions), share
# max_active = 2 for 10 s. Every thread completes at least half the mean; the
# server (sampled without the shim) never sees more than 2 of their backends
# busy at once and sees 2; `pqshim stat` counts the waits, no timeouts.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
CAP=2 SECS=10
POL=$(policy_new fair "[cap]
max_active = $CAP
wait_timeout = 20s
")

sampler_start t_cap_fair_

pids=()
for p in 1 2; do
	"$PQSHIM" run -p "$POL" -- "$PY" "$LOAD" load --app t_cap_fair_$p --threads 4 \
		--seconds "$SECS" --sleep 0.01 --mode xact >"$T/p$p.out" 2>"$T/p$p.err" &
	pids+=("$!")
	bg_track "$!"
done
for k in 0 1; do
	rc=0
	wait "${pids[$k]}" || rc=$?
	assert_eq "$rc" 0 "process $((k + 1)): exit status (stderr: $(tail -3 "$T/p$((k + 1)).err"))"
done
sampler_stop

counts=$(sed -n 's/^COUNTS //p' "$T/p1.out" "$T/p2.out" | jq -s -c 'add')
assert_eq "$(jq length <<<"$counts")" 8 "threads that reported: $counts"
read -r min mean max < <(jq -r '"\(min) \(add / length) \(max)"' <<<"$counts")
echo "completions per thread: $counts (min $min, mean $mean, max $max)"
assert_ge "$min" "$(awk -v m="$mean" 'BEGIN { print m / 2 }')" "the slowest thread's completions (>= half the mean $mean)"
# 2 slots of ~10 ms transactions for 10 s: far more than a token amount
assert_ge "$(jq add <<<"$counts")" 500 "completions in all"

note "server's view: $S"
assert_le "$(jq .peak_strict <<<"$S")" "$CAP" "server: busy backends at one instant (peak)"
assert_eq "$(jq .peak_strict <<<"$S")" "$CAP" "server: peak busy backends (the cap used)"
assert_ge "$(jqp "$POL" .cap.waits)" 1 "stat: .cap.waits"
assert_eq "$(jqp "$POL" .cap.timeouts)" 0 "stat: .cap.timeouts"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "stat: active waiting at the end"
note "cap: $(jqp "$POL" '.cap | {waits, wait_ms_p50, wait_ms_p99} | tostring')"
echo "ok: 8 threads in 2 processes on $CAP slots: min $min, mean $mean"
