# shellcheck shell=bash
# tests/integration/cluster.sh: helpers for the scope = cluster tests and the
# cluster bench (sourced after lib.sh). Simulated hosts are private mount
# and UTS namespaces on this machine (needs root): each has its own tmpfs on
# /dev/shm, so its own pqshim segment, and its own host name.
#
#   host_up NAME            start host NAME (an anchor process keeps its namespaces)
#   on_host NAME CMD...     exec CMD inside host NAME (same pid: call it in the
#                           background or in a subshell)
#   host_stat NAME POLICY   pqshim stat --json on host NAME
#   net_host_up NAME NET    host NAME as host_up, in a network namespace of its
#                           own too, joined to this one by a veth pair: NET.1
#                           here, NET.2 there (NET: three octets, 10.231.7)
#   net_cut NAME            the host's link goes silent: its address removed, so
#                           nothing it sends leaves and what comes to it is
#                           dropped unanswered (no RST: only keepalives tell)
#   coord_start DIR [LISTEN] a small PostgreSQL of our own on 127.0.0.1 (or
#                           listen_addresses LISTEN, any client trusted) for
#                           coordination (sets CPORT); coord_stop, coord_restart
#   coord_db NAME           a database of that name on the bed's primary for
#                           coordination (dropped at exit); sets CDB
#   overlap TABLE           the most rows of TABLE (t0, t1) overlapping in time
#   idle_lease HOST POLICY APP N SECS  a psycopg2 process on HOST under POLICY
#                           whose 4 threads run N statements `select
#                           pg_sleep(SECS)` each, then say IDLE ($T/idle.out)
#                           and idle, holding the host's lease (sets IDLE:
#                           its pid); waits until it says so
#   cluster_policy NAME MAX TIMEOUT [MORE]  a scope = cluster policy on the bed's
#                           primary's database $CDB (coord_db first), max_active
#                           MAX, wait_timeout TIMEOUT, log $T/NAME.log, then MORE
#                           (lanes...); prints its path
#   cluster_bed NAME MAX TIMEOUT [MORE]  coord_db pqt_NAME_$$, then POL=the
#                           cluster_policy NAME MAX TIMEOUT MORE, then lane_table
#                           TBL=t_NAME (the lanes-across-hosts tests' start)
#   host_load HOST NAME POLICY TBL APP ARGS...  tests/clients/py_lane_load.py on
#                           HOST under POLICY (lane_lib.sh's lane_load, on a host)
[ "$(id -u)" = 0 ] || fail "the cluster tests simulate hosts with namespaces: run as root"
command -v unshare >/dev/null && command -v nsenter >/dev/null || fail "unshare/nsenter missing (util-linux)"

# host_load is lane_lib.sh's lane_load on a host (its LANE_PID, lane_wait, q)
[ -n "${LANELOAD:-}" ] || . "$(dirname "${BASH_SOURCE[0]}")/lane_lib.sh"
declare -A HOST_PID HOST_DEV
_NET_N=0
host_up() {
	local name=$1
	unshare --mount --uts -- sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && hostname "$1" &&
		exec sleep 600' sh "$name" </dev/null &
	HOST_PID[$name]=$!
	bg_track "$!"
	wait_until 5 _host_named "$name" || fail "host $name did not come up"
}
_host_named() { [ "$(nsenter -t "${HOST_PID[$1]}" -u hostname 2>/dev/null)" = "$1" ]; }
on_host() {
	local name=$1
	shift
	exec nsenter -t "${HOST_PID[$name]}" -m -u -n -- "$@"
}
host_stat() {
	nsenter -t "${HOST_PID[$1]}" -m -u -n -- "$PQSHIM" stat -p "$2" --json
}
net_host_up() {
	local name=$1 net=$2 dev=pqv$$$((_NET_N++))
	command -v ip >/dev/null || fail "ip missing (iproute2)"
	unshare --mount --uts --net -- sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && hostname "$1" &&
		exec sleep 600' sh "$name" </dev/null &
	HOST_PID[$name]=$!
	bg_track "$!"
	wait_until 5 _host_named "$name" || fail "host $name did not come up"
	ip link add "${dev}a" type veth peer name "${dev}b" || fail "net_host_up: veth pair"
	at_exit "ip link del ${dev}a 2>/dev/null"
	ip link set "${dev}b" netns "${HOST_PID[$name]}" && ip addr add "$net.1/24" dev "${dev}a" &&
		ip link set "${dev}a" up || fail "net_host_up: this side of the link"
	nsenter -t "${HOST_PID[$name]}" -n sh -c "ip link set lo up && ip addr add $net.2/24 dev ${dev}b &&
		ip link set ${dev}b up" || fail "net_host_up: the host's side of the link"
	HOST_DEV[$name]=${dev}b
}
net_cut() {
	nsenter -t "${HOST_PID[$1]}" -n ip addr flush dev "${HOST_DEV[$1]}" || fail "net_cut $1"
}

_coord_srv() { (cd / && runuser -u postgres -- env -u LD_PRELOAD -u PQSHIM_POLICY "$@"); }
coord_start() {
	CDIR=$1
	mkdir -p "$CDIR" && chown postgres: "$CDIR"
	while :; do
		CPORT=$((41000 + RANDOM % 9000))
		(exec 3<>"/dev/tcp/127.0.0.1/$CPORT") 2>/dev/null || break
	done
	_coord_srv /usr/lib/postgresql/15/bin/initdb -D "$CDIR/data" -U postgres -A trust --no-sync \
		-E UTF8 --locale=C --no-instructions >"$CDIR/initdb.log" 2>&1 || fail "coordinator: initdb"
	cat >>"$CDIR/data/postgresql.conf" <<-EOF
		listen_addresses = '${2:-127.0.0.1}'
		unix_socket_directories = '$CDIR'
		port = $CPORT
		fsync = off
		max_connections = 40
		shared_buffers = 8MB
	EOF
	[ -z "${2:-}" ] || echo "host all all 0.0.0.0/0 trust" >>"$CDIR/data/pg_hba.conf"
	coord_restart
	at_exit coord_stop
}
coord_restart() {
	_coord_srv /usr/lib/postgresql/15/bin/pg_ctl -D "$CDIR/data" -l "$CDIR/log" -w -t 30 start \
		>/dev/null || fail "coordinator: start"
}
coord_stop() {
	[ -f "$CDIR/data/postmaster.pid" ] || return 0
	_coord_srv /usr/lib/postgresql/15/bin/pg_ctl -D "$CDIR/data" -m fast -w -t 20 stop >/dev/null 2>&1 || true
}
coord_sql() { # SQL: one value from the coordinator's database postgres
	env -u LD_PRELOAD -u PQSHIM_POLICY "$PSQL" -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
		-p "$CPORT" -U postgres -d postgres <<<"$1"
}

coord_db() {
	CDB=$1
	sql_primary "create database $CDB" >/dev/null
	at_exit "sql_primary 'drop database if exists $CDB with (force)' >/dev/null 2>&1"
}

overlap() { # the largest number of rows of log (t0, t1) that overlap: on the bed's primary
	sql_primary "with ev as (select t0 as t, 1 as d from $1 union all select t1, -1 from $1),
		run as (select sum(d) over (order by t, d rows unbounded preceding) as c from ev)
		select coalesce(max(c), 0) from run"
}
idle_lease() {
	cat >"$T/idle.py" <<-'EOF'
		import sys, threading, time, psycopg2
		def work():
		    c = psycopg2.connect(application_name=sys.argv[1])
		    for _ in range(int(sys.argv[2])):
		        cur = c.cursor()
		        cur.execute("select pg_sleep(%s)" % float(sys.argv[3]))
		        c.commit()
		    c.close()
		ts = [threading.Thread(target=work) for _ in range(4)]
		for t in ts: t.start()
		for t in ts: t.join()
		print("IDLE", flush=True)
		time.sleep(60)
	EOF
	(PQSHIM_POLICY=$2 LD_PRELOAD=$PQSHIM_LIB on_host "$1" "$PY" "$T/idle.py" "$3" "$4" "$5") \
		>"$T/idle.out" 2>"$T/idle.err" &
	IDLE=$!
	bg_track "$IDLE"
	wait_until 20 _idle_said || fail "the idle process on $1: $(cat "$T/idle.err")"
}
_idle_said() { grep -q IDLE "$T/idle.out"; }

cluster_policy() {
	policy_new "$1" "[cap]
scope = cluster
coordinator = host=$PQT_SOCKDIR port=$PQT_PRIMARY_PORT dbname=$CDB user=postgres
max_active = $2
wait_timeout = $3
${4:-}
[shim]
log = $T/$1.log
"
}
host_load() {
	local h=$1 n=$2 pol=$3 tbl=$4 app=$5
	shift 5
	(PQSHIM_POLICY=$pol LD_PRELOAD=$PQSHIM_LIB on_host "$h" timeout 60 "$PY" \
		"$PQT_ROOT/tests/clients/py_lane_load.py" --app "$app" --table "$tbl" "$@") \
		>"$T/$n.out" 2>"$T/$n.err" &
	bg_track "$!"
	LANE_PID[$n]=$!
}
cluster_bed() {
	coord_db "pqt_$1_$$"
	POL=$(cluster_policy "$@")
	TBL=t_$1
	lane_table "$TBL"
}
