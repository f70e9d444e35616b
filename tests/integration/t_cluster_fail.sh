#!/usr/bin/env bash
# t_cluster_fail.sh: scope = cluster when the coordinator cannot be reached
# (a small PostgreSQL of the test's own on 127.0.0.1, stopped and started;
# the workload runs on the bed's primary):
#  - at start, on_error = fail-closed: a statement fails with SQLSTATE 53300
#    and a pqshim: message naming the coordinator; nothing reaches the server;
#  - at start, on_error = fail-open: the host cap holds (max_active = 2, 4
#    threads: the server never has more than 2 of their transactions at once,
#    from the rows they log), and the log and pqshim stat say so;
#  - lost mid-run and back (one psycopg2 client looping on `select 1`):
#    fail-closed: after the coordinator stops, statements fail with 53300
#    naming it; once it is back, they succeed again and the coordinator
#    shows this host's slot lock; fail-open: statements go on succeeding
#    while it is down, the log says the host cap is in force, then that the
#    cluster is back;
#  - queued when the coordinator is lost (fail-closed, max_active = 1,
#    wait_timeout = 20s, a psql holding the slot in a transaction): the
#    waiter fails at once with 53300 naming the coordinator (within 3 s of
#    pg_ctl stop), not at its wait_timeout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"

coord_start "$T/coord"
fpolicy() { # NAME ON_ERROR PORT [MAX]
	policy_new "$1" "[cap]
scope = cluster
coordinator = host=127.0.0.1 port=$3 dbname=postgres user=postgres
max_active = ${4:-2}
wait_timeout = 5s
[shim]
on_error = $2
log = $T/$1.log
"
}
DEAD=$CPORT
while [ "$DEAD" = "$CPORT" ] || (exec 3<>"/dev/tcp/127.0.0.1/$DEAD") 2>/dev/null; do
	DEAD=$((41000 + RANDOM % 9000))
done

cat >"$T/client.py" <<'EOF'
# client.py APP THREADS SECONDS PAUSE TABLE: each thread loops on its own
# connection: a transaction that logs now() and clock_timestamp() into TABLE
# (or `select 1` when TABLE is -), then PAUSE seconds; prints one line per try:
# "<epoch> ok" or "<epoch> err <pgcode> <message>"
import sys, threading, time, psycopg2
app, threads, secs, pause, table = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
lock = threading.Lock()
def say(s):
    with lock:
        print("%.3f %s" % (time.time(), s), flush=True)
def run():
    c = psycopg2.connect(application_name=app)
    c.autocommit = True
    end = time.time() + secs
    while time.time() < end:
        try:
            with c.cursor() as cur:
                if table == "-":
                    cur.execute("select 1")
                else:
                    cur.execute("begin; select pg_sleep(0.02); insert into " + table +
                                " values (now(), clock_timestamp()); commit")
            say("ok")
        except psycopg2.Error as e:
            say("err %s %s" % (e.pgcode, str(e).strip().replace("\n", " ")))
            if c.closed:
                return
        time.sleep(pause)
ts = [threading.Thread(target=run) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
EOF
client() { # POLICY LOG ARGS... (execs: call it in a subshell or in the background)
	local pol=$1 out=$2
	shift 2
	PQSHIM_POLICY=$pol LD_PRELOAD=$PQSHIM_LIB exec "$PY" "$T/client.py" "$@" >"$out" 2>"$out.err"
}

# ============ unreachable at start: fail-closed ============================
POL=$(fpolicy closed fail-closed "$DEAD")
(client "$POL" "$T/closed.out" t_cluster_closed 1 0.5 0.1 -) || fail "client: $(cat "$T/closed.out.err")"
line=$(grep -m1 " err " "$T/closed.out") || fail "fail-closed at start: no statement failed: $(cat "$T/closed.out")"
echo "fail-closed at start: $line"
assert_match "$line" " err 53300 pqshim: no slot: the coordinator \(host=127\.0\.0\.1 port=$DEAD dbname=postgres user=postgres\) is unreachable: .*on_error = fail-closed" \
	"fail-closed at start: the error"
grep -q " ok" "$T/closed.out" && fail "fail-closed at start: a statement ran: $(cat "$T/closed.out")"
assert_eq "$(jqp "$POL" '.cluster.state')" fail-closed "stat: cluster.state (fail-closed, at start)"

# ============ unreachable at start: fail-open (the host cap) ===============
POL=$(fpolicy open fail-open "$DEAD" 2)
sql_primary "create table olog (t0 timestamptz, t1 timestamptz)" >/dev/null
(client "$POL" "$T/open.out" t_cluster_open 4 2 0 olog) || fail "client: $(cat "$T/open.out.err")"
grep -q " err " "$T/open.out" && fail "fail-open at start: a statement failed: $(grep -m3 ' err ' "$T/open.out")"
n=$(sql_primary "select count(*) from olog")
peak=$(overlap olog)
echo "fail-open at start: $n transactions, server-side peak $peak (host cap 2)"
assert_ge "$n" 20 "fail-open: transactions run"
assert_eq "$peak" 2 "fail-open: the host cap, from the server's rows"
grep -q "falling back to the host cap (max_active = 2 on this host alone; on_error = fail-open)" "$T/open.log" ||
	fail "fail-open: the log does not say so: $(cat "$T/open.log")"
assert_eq "$(jqp "$POL" '.cluster.state')" fail-open "stat: cluster.state (fail-open)"

# ============ lost mid-run, then back ======================================
slot_locks() {
	coord_sql "select count(distinct objid) from pg_locks where locktype = 'advisory' and objsubid = 2
		and objid < 1073741824::oid and granted"
}
for mode in fail-closed fail-open; do
	POL=$(fpolicy "mid-$mode" "$mode" "$CPORT" 2)
	out=$T/mid-$mode.out
	client "$POL" "$out" "t_cluster_$mode" 1 12 0.05 - &
	cpid=$!
	bg_track "$cpid"
	oks() { [ "$(grep -c " ok" "$out")" -ge "$1" ]; }
	wait_until 5 oks 5 || fail "$mode: the client never ran: $(cat "$out" "$out.err")"
	has_lock() { [ "$(slot_locks)" -ge 1 ]; }
	wait_until 5 has_lock || fail "$mode: no slot lock on the coordinator"
	t_stop=$EPOCHREALTIME
	coord_stop
	sleep 2
	after_stop=$(awk -v t="$t_stop" '$1 > t + 1' "$out")
	if [ "$mode" = fail-closed ]; then
		line=$(grep -m1 " err " <<<"$after_stop") || fail "$mode: nothing failed with the coordinator down: $(tail -5 "$out")"
		assert_match "$line" " err 53300 pqshim: no slot: the coordinator \(host=127\.0\.0\.1 port=$CPORT dbname=postgres user=postgres\) is unreachable" \
			"$mode: the error while the coordinator is down"
		assert_eq "$(grep -c " ok" <<<"$after_stop" || true)" 0 "$mode: statements that ran 1-2 s after the coordinator stopped"
	else
		assert_eq "$(grep -c " err " <<<"$after_stop" || true)" 0 "$mode: statements that failed with the coordinator down"
		assert_ge "$(grep -c " ok" <<<"$after_stop" || true)" 5 "$mode: statements run with the coordinator down"
		grep -q "falling back to the host cap" "$T/mid-$mode.log" || fail "$mode: the log: $(cat "$T/mid-$mode.log")"
		assert_eq "$(jqp "$POL" '.cluster.state')" fail-open "stat: cluster.state ($mode, mid-run)"
	fi
	t_start=$EPOCHREALTIME
	coord_restart
	back() { awk -v t="$t_start" '$1 > t && $2 == "ok"' "$out" | grep -q .; }
	wait_until 5 back || fail "$mode: statements never succeeded again: $(tail -5 "$out")"
	took=$(awk -v t="$t_start" '$1 > t && $2 == "ok" { printf "%.3f", $1 - t; exit }' "$out")
	echo "$mode: after the coordinator came back, the first statement succeeded ${took}s after pg_ctl start began"
	wait_until 5 has_lock || fail "$mode: no slot lock on the coordinator after its return"
	grep -q "reachable again: back to the cluster cap" "$T/mid-$mode.log" || fail "$mode: the log: $(cat "$T/mid-$mode.log")"
	assert_eq "$(jqp "$POL" '.cluster.state')" ok "stat: cluster.state ($mode, back)"
	kill "$cpid" 2>/dev/null || true
	wait "$cpid" 2>/dev/null || true
done
# ============ queued when the coordinator is lost: fail at once ==============
# fail-closed, wait_timeout = 20s: psql h holds the slot in a transaction, a
# psycopg2 client queues behind it; the coordinator stops: the client fails at
# once (53300 naming the coordinator), long before its wait_timeout. Once with
# max_active = 1, once in a lane of one slot ("reports": the waiter queues in
# the lane).
queued_fails() { # NAME MAX QUEUED_JQ [LANES]: the case above under policy NAME
	local name=$1 jqq=$3 pol
	pol=$(policy_new "$name" "[cap]
scope = cluster
coordinator = host=127.0.0.1 port=$CPORT dbname=postgres user=postgres
max_active = $2
wait_timeout = 20s
${4:-}
[shim]
on_error = fail-closed
log = $T/$name.log
")
	PGAPPNAME=t_cluster_${name}h psql_hold "${name}h" "$pol"
	psql_feed "${name}h" "begin;" "select 1;"
	client "$pol" "$T/${name}w.out" "t_cluster_${name}w" 1 30 0.2 - &
	local w=$!
	bg_track "$w"
	queued() { [ "$(jqp "$pol" "$jqq")" = 1 ]; }
	wait_until 10 queued || fail "$name: w never queued: $(stat_json "$pol" | jq -c '{cap, lanes}')"
	t_stop=$EPOCHREALTIME
	coord_stop
	answered() { grep -q . "$T/${name}w.out"; }
	wait_until 15 answered || fail "$name: w never answered with the coordinator down: $(cat "$T/${name}w.out.err")"
	line=$(head -n 1 "$T/${name}w.out")
	took=$(awk -v a="$t_stop" '{ printf "%.3f", $1 - a; exit }' "$T/${name}w.out")
	echo "$name when the coordinator stopped: the waiter failed ${took}s after pg_ctl stop began" \
		"(wait_timeout 20s): $line"
	assert_match "$line" " err 53300 pqshim: no slot: the coordinator \(host=127\.0\.0\.1 port=$CPORT dbname=postgres user=postgres\) is unreachable: .*on_error = fail-closed" \
		"$name: the waiter's first answer (SQLSTATE, text)"
	assert_le "$took" 3 "$name: seconds from the coordinator's stop to the waiter's failure"
	kill "$w" 2>/dev/null || true
	wait "$w" 2>/dev/null || true
	psql_feed "${name}h" "commit;"
	held_end "${name}h" 0
}
queued_fails queued 1 .cap.waiting
coord_restart
queued_fails lqueued 4 '.lanes[] | select(.name == "reports") | .waiting' '[lane "reports"]
match = application_name=t_cluster_l*
max_active = 1'

echo "ok: fail-closed refuses, fail-open falls back to the host cap, both come back to the cluster"
