#!/usr/bin/env bash
# t_cap_park.sh: parked slots (README "The cap": an autocommit statement's
# end leaves its slot parked on the idle connection; anyone who needs one
# takes it at once). The cap still holds as the SERVER sees it.
#  - max_active = 1, wait_timeout = 5s. psql A runs three autocommit
#    statements (from the second on, the fast path parks its slot) and sits
#    idle with its connection open. `pqshim stat --json`: A's connection
#    idle, its slot "none", `active` 0. Program B's insert runs at once
#    (under 1.5 s: a parked slot never swept would make it wait the 5 s and
#    fail), and the slot came by the slow path (.cap.acquired + 1: it was
#    A's, parked; a free slot is taken without the lock, uncounted). A's
#    next statement gets a slot again (it was taken from it).
#  - two pgbench processes (-c 1 each, BEGIN; pg_sleep(0.02); COMMIT, each
#    transaction logging its start and end on the server) and A (the same
#    transaction, 10 times) run at once: at most 1 transaction at a time in
#    the server's rows, all of them ran.
#  - kill -9 of A while it is parked: the next program's insert runs at once.
#  - a reload lowering max_active from 3 to 1 while two idle psql sessions
#    are parked: fed at once a transaction of 0.3 s each, they run one after
#    the other (the server's rows: overlap 1); had their parked slots
#    survived the lowered cap, both would run at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

POL=$(policy_new park "[cap]
max_active = 1
wait_timeout = 5s
")
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
xact_log park_log 0.02
sql_primary "create table park_b (id serial, at timestamptz default clock_timestamp())"

# run_b: one program under the shim, one insert; prints its seconds
run_b() {
	local t0 t1
	t0=$(date +%s.%N)
	"$PQSHIM" run -p "$POL" -- "$PSQL" -X -q -v ON_ERROR_STOP=1 \
		-c "insert into park_b default values" >"$T/b.out" 2>&1 ||
		fail "program B failed: $(cat "$T/b.out")"
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
# xact LINES for psql: the logged transaction of xact_log, sleeping $1 s
xact_lines() {
	printf '%s\n' "begin;" \
		"insert into park_log (t0) values (clock_timestamp()) returning id \\gset" \
		"select pg_sleep($1);" \
		"update park_log set t1 = clock_timestamp() where id = :id;" "commit;"
}

# --- A parks, B takes the slot at once ------------------------------------------
PGAPPNAME=t_cap_park_a psql_hold a "$POL"
psql_feed a "select 1;" "select 1;" "select 1;"
J=$(stat_json "$POL")
assert_eq "$(jq -r '.cap.active' <<<"$J")" 0 "stat: active while A is parked"
assert_eq "$(jq -r '[.connections[] | "\(.state) \(.slot)"] | join(",")' <<<"$J")" "idle none" \
	"stat: A's connection (state, slot) while parked"
acq0=$(jq -r '.cap.acquired' <<<"$J")
secs=$(run_b)
note "B's insert with A parked: $secs s"
assert_le "$secs" 1.5 "B: seconds for its insert (wait_timeout 5s)"
assert_eq "$(sql_primary "select count(*) from park_b")" 1 "server: B's row"
assert_eq "$(jqp "$POL" '.cap.acquired')" $((acq0 + 1)) "stat: B's slot came from the sweep"
psql_feed a "select 2;"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "stat: after A's next statement"

# --- the cap from the server's rows, with parkers ---------------------------------
epoch=$(sql_primary "select extract(epoch from clock_timestamp())")
pids=()
for i in 1 2; do
	"$PQSHIM" run -p "$POL" -- "$PGBENCH" -n -f "$T/park_log.sql" -c 1 -j 1 -t 25 \
		>"$T/pgb$i.out" 2>&1 &
	pids+=($!)
	bg_track $!
done
for i in $(seq 10); do
	mapfile -t lines < <(xact_lines 0.02)
	psql_feed a "${lines[@]}"
done
for p in "${pids[@]}"; do wait "$p" || fail "pgbench failed: $(cat "$T"/pgb*.out)"; done
n=$(sql_primary "select count(*) from park_log where t1 is not null and t0 > to_timestamp($epoch)")
assert_eq "$n" 60 "server: every transaction ran (2 x 25 + 10)"
assert_eq "$(xact_overlap park_log "$epoch")" 1 "server: transactions at once (max_active = 1)"

# --- kill -9 of a parked A ----------------------------------------------------------
psql_feed a "select 3;" "select 3;"
kill -KILL "${HELD_PID[a]}"
wait "${HELD_PID[a]}" 2>/dev/null || true
held_close a
secs=$(run_b)
note "B's insert after A was killed parked: $secs s"
assert_le "$secs" 1.5 "B after kill -9 of A: seconds for its insert"
assert_eq "$(sql_primary "select count(*) from park_b")" 2 "server: B's second row"
assert_eq "$(jqp "$POL" '"\(.cap.active) \(.cap.waiting)"')" "0 0" "stat: after the kill"

# --- a reload lowering max_active while two sessions are parked ----------------------
POL2=$(policy_new park2 "[cap]
max_active = 3
wait_timeout = 10s
")
for s in a1 a2; do
	PGAPPNAME=t_cap_park_$s psql_hold "$s" "$POL2"
	psql_feed "$s" "select 1;" "select 1;" "select 1;"
done
sed -i 's/^max_active = 3$/max_active = 1/' "$POL2"
sleep 1.2                # settled (POLICY_SETTLE_MS: its ctime is now)
# a new process on the segment sets the settled policy's cap (and sweeps);
# it sends no statement (a statement of its own would find the cap full
# and sweep as a waiter does)
LD_PRELOAD=$PQSHIM_LIB PQSHIM_POLICY="$POL2" /usr/lib/postgresql/15/bin/pg_isready -q ||
	fail "pg_isready under the shim"
assert_eq "$(jqp "$POL2" '.cap.max_active')" 1 "stat: the lowered cap"
epoch=$(sql_primary "select extract(epoch from clock_timestamp())")
mapfile -t lines < <(xact_lines 0.3)
for s in a1 a2; do held_send "$s" "${lines[@]}" "\\! touch $T/$s.lowered"; done
both_ran() { [ -e "$T/a1.lowered" ] && [ -e "$T/a2.lowered" ]; }
wait_until 15 both_ran || fail "the two sessions did not both run their transaction"

assert_eq "$(sql_primary "select count(*) from park_log where t1 is not null and t0 > to_timestamp($epoch)")" \
	2 "server: both sessions' transactions ran"
assert_eq "$(xact_overlap park_log "$epoch")" 1 "server: at once after the cap was lowered to 1"
held_end a1 0
held_end a2 0
echo "ok: t_cap_park"
