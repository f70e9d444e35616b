#!/usr/bin/env bash
# t_cap_crash.sh: slots held by processes killed with kill -9 come back by
# themselves, and the cap's accounting survives random kills.
#  - max_active = 2: two psql sessions under the shim hold both slots inside
#    BEGIN (the server shows both 'idle in transaction'); a psycopg2 client's
#    `select 1` queues (stat: waiting 1, its slot "waiting"; the server has
#    not seen the statement). Both holders are killed with kill -9: the
#    waiter's statement completes within 1 s of the kills and reaches the
#    server, and the holders' backends go away.
#  - ten random kills: six looping clients (three pgbench -c 1 -j 1 and three
#    psycopg2, BEGIN; pg_sleep(0.005); COMMIT) on max_active = 2; every ~0.3 s
#    a random one is killed with kill -9 (holding, waiting or between
#    transactions, whatever it was doing) and replaced. `pqshim stat` never
#    shows more than 2 active; the survivors run to their end and exit 0; then
#    .cap.active and .cap.waiting are 0 (and the queue empty), the server has
#    no busy backend left, and a new client gets a slot at once.
#  - a holder killed while its parent has not reaped it yet (a zombie: dead,
#    its socket closed, its backend gone, only its exit status left) gives
#    its slot back too: a waiter gets it within 1 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

# shellcheck source=probe.sh
. "$(dirname "$0")/probe.sh"
# --- psql sessions held open on fifos (lib.sh's psql_hold; HELD_PID is psql's pid)
psql_start() { PGAPPNAME=$3 psql_hold "$1" "$2"; } # NAME POLICY APP
busy() { # APP-PREFIX: its backends that are busy, as the server sees them
	sql_primary "select count(*) from pg_stat_activity where application_name like '$1%'
		and (state = 'active' or state like 'idle in transaction%')"
}
ms_since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) }'; }

# ============ two holders killed, a waiter already queued ====================
POL=$(policy_new crash "[cap]
max_active = 2
wait_timeout = 10s
")
psql_start h1 "$POL" t_cap_crash_h1
psql_start h2 "$POL" t_cap_crash_h2
psql_feed h1 "begin;" "select pg_backend_pid();"
psql_feed h2 "begin;" "select pg_backend_pid();"
assert_eq "$(sql_primary "select string_agg(state, ',' order by application_name)
	from pg_stat_activity where application_name like 't_cap_crash_h%'")" \
	"idle in transaction,idle in transaction" "server: both holders"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "2 0" "stat: active waiting (both held)"

probe_start w "$POL" t_cap_crash_w
pcmd w "a connect c"
assert_eq "$(r .ok)" true "waiter: connect: $R"
psend w "a exec c select 1"
WSEQ=$SEQ
queued() { [ "$(jqp "$POL" '.cap.waiting')" = 1 ]; }
wait_until 5 queued || fail "the waiter never queued: $(stat_json "$POL")"
assert_eq "$(jqp "$POL" "[.connections[] | select(.pid == ${PRUN[w]}) | .slot] | join(\" \")")" \
	waiting "stat: the waiter's slot"
assert_eq "$(server_activity t_cap_crash_w "state || '|' || query")" "idle|" \
	"server: the waiter's backend (nothing sent yet)"
sleep 0.3 # it really waits
grep -q "^R {\"seq\": $WSEQ, " "$T/w.out" && fail "the waiter ran while both slots were held: $(cat "$T/w.out")"

t_kill=$EPOCHREALTIME
kill -9 "${HELD_PID[h1]}" "${HELD_PID[h2]}"
presult w "$WSEQ" 5
took=$(ms_since "$t_kill" "$(r .t1)")
echo "waiter: got its slot and its result $took s after both holders were killed (waited $(r .elapsed) s in all)"
assert_eq "$(r .ok) $(r '.rows | tojson')" "true [[1]]" "waiter: select 1 after the kills: $R"
assert_le "$took" 1.0 "seconds from the kills to the waiter's result"
assert_eq "$(server_activity t_cap_crash_w "state || '|' || query")" "idle|select 1" \
	"server: the waiter's statement ran"
holders_gone() { [ "$(server_backends t_cap_crash_h1)$(server_backends t_cap_crash_h2)" = 00 ]; }
wait_until 5 holders_gone || fail "server: the killed holders' backends are still there"
for h in h1 h2; do
	wait "${HELD_PID[$h]}" 2>/dev/null || true
	held_close "$h"
done
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "stat: active waiting after the kills"
probe_end w

# ============ ten random kills ================================================
POL=$(policy_new chaos "[cap]
max_active = 2
wait_timeout = 10s
")
printf 'begin;\nselect pg_sleep(0.005);\ncommit;\n' >"$T/x5.sql"
DUR=6 # each client's own length (seconds): outlives the kills
nc=0
cpids=() ckind=()
start_client() { # KIND: pgbench | py
	nc=$((nc + 1))
	if [ "$1" = pgbench ]; then
		PGAPPNAME=t_cap_chaos_$nc held_clean "$PQSHIM" run -p "$POL" -- "$PGBENCH" -n \
			-f "$T/x5.sql" -c 1 -j 1 -T "$DUR" >"$T/c$nc.out" 2>"$T/c$nc.err" &
	else
		held_clean "$PQSHIM" run -p "$POL" -- "$PY" "$LOAD" load --app t_cap_chaos_$nc \
			--threads 1 --seconds "$DUR" --sleep 0.005 --mode xact \
			>"$T/c$nc.out" 2>"$T/c$nc.err" &
	fi
	bg_track "$!"
	cpids+=("$!") cnum+=("$nc") ckind+=("$1")
}
cnum=()
for k in pgbench py pgbench py pgbench py; do start_client "$k"; done
sleep 0.5 # they are connected and looping
stat_max=0 kills=()
for ((i = 0; i < 10; i++)); do
	sleep 0.$((20 + RANDOM % 20))
	j=$((RANDOM % ${#cpids[@]}))
	victim=${cpids[$j]} kind=${ckind[$j]}
	if kill -9 "$victim" 2>/dev/null; then
		wait "$victim" 2>/dev/null || true
		kills+=("$kind#${cnum[$j]}")
	else # it ended its run before the kill came (a loaded machine): it must have ended well
		rc=0
		wait "$victim" || rc=$?
		assert_eq "$rc" 0 "$kind#${cnum[$j]}, ended before its kill: exit status"
		kills+=("($kind#${cnum[$j]} had ended)")
	fi
	unset "cpids[$j]" "ckind[$j]" "cnum[$j]"
	cpids=("${cpids[@]}") ckind=("${ckind[@]}") cnum=("${cnum[@]}")
	start_client "$kind"
	a=$(jqp "$POL" .cap.active)
	[ "$a" -gt "$stat_max" ] && stat_max=$a
done
note "killed: ${kills[*]}; survivors: ${cnum[*]}"
assert_le "$stat_max" 2 "stat: .cap.active during the kills"
for k in "${!cpids[@]}"; do
	rc=0
	wait "${cpids[$k]}" || rc=$?
	n=${cnum[$k]}
	assert_eq "$rc" 0 "survivor ${ckind[$k]}#$n: exit status (stderr: $(tail -3 "$T/c$n.err"))"
	if [ "${ckind[$k]}" = pgbench ]; then
		tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$T/c$n.out")
	else
		tx=$(sed -n 's/^COUNTS \[\([0-9]*\)\]$/\1/p' "$T/c$n.out")
	fi
	assert_ge "${tx:-0}" 1 "survivor ${ckind[$k]}#$n: transactions"
done
settled() { [ "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting) \(.cap.queue // [] | length)"')" = "0 0 0" ]; }
wait_until 2 settled || true
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting) \(.cap.queue // [] | length)"')" "0 0 0" \
	"stat after the kills: active waiting queue"
assert_eq "$(jqp "$POL" '[.processes[], .connections[]] | length')" 0 "stat: records left"
assert_eq "$(jqp "$POL" '.cap.timeouts')" 0 "stat: .cap.timeouts"
no_busy() { [ "$(busy t_cap_chaos_)" = 0 ]; }
wait_until 5 no_busy || fail "server: busy backends of the killed clients left"
probe_start n "$POL" t_cap_chaos_new
pcmd n "a connect c"
pcmd n "a exec c select 1"
assert_eq "$(r .ok) $(r '.rows | tojson')" "true [[1]]" "a new client after the kills: $R"
assert_le "$(r .elapsed)" 0.3 "a new client after the kills: seconds for select 1"
probe_end n
note "chaos cap: $(jqp "$POL" '.cap | {waits, timeouts, acquired, wait_ms_p99} | tostring')"

# ============ a killed holder not yet reaped by its parent (a zombie) ========
POL=$(policy_new zombie "[cap]
max_active = 1
wait_timeout = 5s
")
# The parent starts the holder and reaps it only when told to (a line on its
# stdin); meanwhile the killed holder stays a zombie.
cat >"$T/parent.py" <<'EOF'
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
p.stdin.write(b"begin;\nselect 1;\n")
p.stdin.flush()
print("CHILD %d" % p.pid, flush=True)
sys.stdin.readline()
print("REAPED %d" % p.wait(), flush=True)
EOF
PGAPPNAME=t_cap_zombie_h held_start parent "$PY" "$T/parent.py" "$PQSHIM" run -p "$POL" -- "$PSQL" -X -q
held() { [ "$(jqp "$POL" .cap.active)" = 1 ] && [ "$(busy t_cap_zombie_h)" = 1 ]; }
wait_until 10 held || fail "zombie: the holder never held the slot: $(cat "$T/parent.err")"
CHILD=$(sed -n 's/^CHILD //p' "$T/parent.out")
probe_start z "$POL" t_cap_zombie_w
pcmd z "a connect c"
psend z "a exec c select 1"
ZSEQ=$SEQ
wait_until 5 queued || fail "zombie: the waiter never queued"
t_kill=$EPOCHREALTIME
kill -9 "$CHILD"
zombie() { [ "$(awk '{ print $3 }' "/proc/$CHILD/stat")" = Z ]; }
wait_until 2 zombie || fail "zombie: the holder $CHILD is not a zombie"
wait_until 5 test "$(server_backends t_cap_zombie_h)" = 0 || true
presult z "$ZSEQ" 8
took=$(ms_since "$t_kill" "$(r .t1)")
note "zombie: the waiter's result came $took s after the kill: $R"
# (in a subshell: the parent is released and checked whatever happens)
(
	assert_eq "$(r .ok)" true "zombie: the waiter's select 1 (holder killed, not yet reaped)"
	assert_le "$took" 1.0 "zombie: seconds from the kill to the waiter's result"
) || true
held_send parent ""
held_end parent
assert_eq "$HELD_RC" 0 "zombie: the parent's exit status ($(cat "$T/parent.err"))"
assert_eq "$(sed -n 's/^REAPED //p' "$T/parent.out")" -9 "zombie: the holder's status"
probe_end z
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "zombie: stat at the end"
echo "ok: slots of killed holders come back; ten random kills leave the cap clean"
