#!/usr/bin/env bash
# t_cluster_keepalive.sh: scope = cluster, a host cut off from the coordinator
# by the network. The coordinator is a small PostgreSQL of the test's own
# reached over TCP on a private address; host h1 lives in a network
# namespace of its own, joined by a veth pair; h2 shares this machine's. The
# policy's conninfo sets low keepalives (keepalives_idle=1,
# keepalives_interval=1, keepalives_count=2, tcp_user_timeout=2000), so the
# documented bounds are: h1 notices within 1 + 1 x 2 = 3 s; the server ends
# h1's session within (2 x 1 + 1) + (2 x 1) x 2 = 7 s (coord.h).
#  - h1 holds all 4 slots (an idle lease: nobody else wanted them); its link
#    goes silent (its address removed: no RST, nothing answers);
#  - h2 then wants a slot: its transaction starts on the server (now(),
#    logged) within the server's bound of 7 s after the cut (+1 s slack),
#    and only once the server has ended h1's session;
#  - h1's stat says fail-closed within its bound of 3 s (+1 s slack).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=cluster.sh
. "$(dirname "$0")/cluster.sh"

[ -x "$PQSHIM" ] && [ -f "$PQSHIM_LIB" ] || fail "build first: no $PQSHIM or $PQSHIM_LIB"

NET=10.231.$(($$ % 200 + 20))
coord_start "$T/coord" '*'
net_host_up h1 "$NET"
host_up h2
POL=$(policy_new ka "[cap]
scope = cluster
coordinator = host=$NET.1 port=$CPORT dbname=postgres user=postgres keepalives_idle=1 keepalives_interval=1 keepalives_count=2 tcp_user_timeout=2000
max_active = 4
wait_timeout = 20s
[shim]
on_error = fail-closed
log = $T/ka.log
")
HOST_BOUND=3 SERVER_BOUND=7
h1_slots() { # slot locks of h1's leader on the coordinator
	coord_sql "select count(distinct l.objid) from pg_locks l join pg_stat_activity a on a.pid = l.pid
		where a.application_name like 'pqshim % h1%' and l.locktype = 'advisory'
		and l.objsubid = 2 and l.objid < 1073741824::oid and l.granted"
}
h1_session() { # h1's sessions on the coordinator, and the time (epoch) it was asked
	coord_sql "select count(*) || ' ' || extract(epoch from clock_timestamp()) from pg_stat_activity
		where application_name like 'pqshim% h1%'"
}
sql_primary "create table kalog (host text, t0 timestamptz)" >/dev/null

# ============ h1 leases all 4 slots, then idles ===============================
idle_lease h1 "$POL" t_cluster_ka 3 0.15
all4() { [ "$(h1_slots)" = 4 ]; }
wait_until 5 all4 || fail "h1 does not hold the 4 slots: $(h1_slots)"
sleep 0.5

# ============ the link goes silent; h2 wants a slot ===========================
t_cut=$EPOCHREALTIME
net_cut h1
(PGAPPNAME=t_cluster_ka_h2 PQSHIM_POLICY=$POL LD_PRELOAD=$PQSHIM_LIB on_host h2 "$PSQL" -X -A -t -q \
	-v ON_ERROR_STOP=1 -c "insert into kalog values ('h2', now())") >"$T/h2.out" 2>&1 &
H2=$!
bg_track "$H2"
t_gone= t_closed= t_seen=$t_cut
end=$(awk -v a="$t_cut" 'BEGIN { printf "%d", a + 15 }')
while [ "${EPOCHSECONDS}" -lt "$end" ]; do # 15 s at most
	if [ -z "$t_gone" ]; then
		read -r n at <<<"$(h1_session)"
		if [ "$n" = 0 ]; then t_gone=$at; else t_seen=$at; fi
	fi
	[ -z "$t_closed" ] && [ "$(host_stat h1 "$POL" 2>/dev/null | jq -r .cluster.state)" = fail-closed ] &&
		t_closed=$EPOCHREALTIME
	[ -n "$t_gone" ] && [ -n "$t_closed" ] && ! kill -0 "$H2" 2>/dev/null && break
	sleep 0.1
done
rc=0
wait "$H2" || rc=$?
assert_eq "$rc" 0 "h2's psql ($(cat "$T/h2.out"))"
[ -n "$t_gone" ] || fail "the server never ended h1's session"
[ -n "$t_closed" ] || fail "h1 never noticed: $(host_stat h1 "$POL" | jq -c .cluster)"
took=$(sql_primary "select extract(epoch from t0) - $t_cut from kalog")
gone=$(awk -v a="$t_cut" -v b="$t_gone" 'BEGIN { printf "%.3f", b - a }')
closed=$(awk -v a="$t_cut" -v b="$t_closed" 'BEGIN { printf "%.3f", b - a }')
echo "network cut: h1 fail-closed after ${closed}s (bound ${HOST_BOUND}s); the server ended h1's session" \
	"after ${gone}s and h2's transaction started after ${took}s (bound ${SERVER_BOUND}s)"
assert_le "$took" "$((SERVER_BOUND + 1))" "seconds from the cut to h2's transaction on the server (bound + 1 s)"
assert_le "$gone" "$((SERVER_BOUND + 1))" "seconds from the cut until the server ended h1's session (bound + 1 s)"
seen=$(awk -v a="$t_cut" -v b="$t_seen" 'BEGIN { printf "%.3f", b - a }')
assert_ge "$(awk -v t="$took" -v s="$seen" 'BEGIN { print (t > s) ? 1 : 0 }')" 1 \
	"h2's transaction started after h1's session was last seen on the server (${took}s, ${seen}s)"
assert_le "$closed" "$((HOST_BOUND + 1))" "seconds from the cut until h1 stopped using its lease (bound + 1 s)"
echo "ok: a host cut off loses its lease within the keepalive bounds"
