#!/usr/bin/env bash
# t_ro_reset.sh: `on_switch = reset`. Two programs hold one connection each,
# used only when the test says (commands on a fifo):
#  - a psycopg2 program that, when a statement fails with OperationalError,
#    closes the connection, connects again and retries (its own reconnect);
#  - a C program that calls PQreset (or PQresetStart/PQresetPoll) when told.
# The flag appears: the first statement on each old connection fails with
# the "pqshim: the connection to the primary was closed: read-only is now on
# (on_switch = reset, ...); reconnect" error and the connection is
# CONNECTION_BAD; the reconnect (psycopg2's new connect, PQreset) lands on
# the replica (pg_is_in_recovery() = t), and the primary shows none of their
# connections. The flag goes while they sit idle: the shim ends their idle
# backends on the replica, the next statement fails the same way ("read-only
# is now off") and the reconnect lands on the primary. Last, PQreset and
# PQresetStart/PQresetPoll on a healthy connection that the policy no longer
# allows land where the policy says.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"


FLAG=$T/read-only.flag
POL=$(ro_policy reset "$T/shim.log" "on_switch = reset
drain_timeout = 5s")
PYAPP=t_ro_reset_py CAPP=t_ro_reset_c

# --- the psycopg2 program: "read" runs `select pg_is_in_recovery(),
# pg_backend_pid()` and prints one JSON line; on OperationalError it
# reconnects and retries once, and says so in the same line.
cat >"$T/reset.py" <<'EOF'
import json, sys
import psycopg2

app = sys.argv[1]


def connect():
    c = psycopg2.connect(application_name=app)
    c.autocommit = True
    return c


def read(c):
    cur = c.cursor()
    cur.execute("select pg_is_in_recovery(), pg_backend_pid()")
    rec, pid = cur.fetchone()
    return {"ok": True, "recovery": rec, "pid": pid}


conn = connect()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    if line.strip() != "read":
        continue
    try:
        out = read(conn)
    except psycopg2.OperationalError as e:
        out = {"ok": False, "error": str(e).strip(), "sqlstate": e.pgcode,
               "closed": conn.closed}
        try:
            conn.close()
            conn = connect()
            out["retry"] = read(conn)
        except Exception as e2:
            out["retry"] = {"ok": False, "error": str(e2).strip()}
    except Exception as e:
        out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "other": True}
    print(json.dumps(out), flush=True)
conn.close()
EOF

# --- the C program: commands "read", "reset" (PQreset), "resetstart"
# (PQresetStart + PQresetPoll with select); one line out per command.
cat >"$T/reset.c" <<'EOF'
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>

static const char *status(PGconn *c)
{
	return PQstatus(c) == CONNECTION_OK ? "OK" : PQstatus(c) == CONNECTION_BAD ? "BAD" : "OTHER";
}

static void one_line(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
	size_t n = strlen(s);
	while (n && s[n - 1] == ' ')
		s[--n] = '\0';
}

int main(void)
{
	PGconn *conn = PQconnectdb("");
	PGconn *const first = conn;
	printf("ready %s\n", status(conn));
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "read", 4) == 0) {
			PGresult *r = PQexec(conn, "select pg_is_in_recovery(), pg_backend_pid()");
			if (PQresultStatus(r) == PGRES_TUPLES_OK) {
				printf("ok %s %s %s\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), status(conn));
			} else {
				char msg[1024];
				const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
				snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
				one_line(msg);
				printf("error %s %s %s\n", status(conn), st ? st : "-", msg);
			}
			PQclear(r);
		} else if (strncmp(line, "resetstart", 10) == 0) {
			int ok = PQresetStart(conn);
			PostgresPollingStatusType p = PGRES_POLLING_WRITING;
			while (ok && p != PGRES_POLLING_OK && p != PGRES_POLLING_FAILED) {
				fd_set fds;
				FD_ZERO(&fds);
				FD_SET(PQsocket(conn), &fds);
				struct timeval tv = { 10, 0 };
				if (select(PQsocket(conn) + 1, p == PGRES_POLLING_READING ? &fds : NULL,
				           p == PGRES_POLLING_WRITING ? &fds : NULL, NULL, &tv) <= 0)
					break;
				p = PQresetPoll(conn);
			}
			printf("resetstart %d %s\n", ok, status(conn));
		} else if (strncmp(line, "reset", 5) == 0) {
			PQreset(conn);
			printf("reset %s\n", status(conn));
		}
		fflush(stdout);
	}
	printf("same %s\n", conn == first ? "yes" : "no");
	PQfinish(conn);
	return 0;
}
EOF
cc -Wall -I"$(pkg-config --variable=includedir libpq)" -o "$T/reset_c" "$T/reset.c" -lpq ||
	fail "cannot build the PQreset program"

held_start py "$PQSHIM" run -p "$POL" -- "$PY" "$T/reset.py" "$PYAPP"
PGAPPNAME=$CAPP held_start c "$PQSHIM" run -p "$POL" -- "$T/reset_c"
held_ready py ready 20
held_ready c ready 10
assert_eq "$(cat "$T/c.out")" "ready OK" "the C program connected"

# py CMD / c CMD: send one command, wait for its line, leave it in $OUT.
pyn=1 cn=1
lines() { [ "$(wc -l <"$1")" -ge "$2" ]; }
py() {
	pyn=$((pyn + 1))
	held_send py "$1"
	wait_until 15 lines "$T/py.out" "$pyn" || fail "psycopg2 program: no answer to $1: $(cat "$T/py.err")"
	OUT=$(sed -n "${pyn}p" "$T/py.out")
}
c() {
	cn=$((cn + 1))
	held_send c "$1"
	wait_until 15 lines "$T/c.out" "$cn" || fail "C program: no answer to $1: $(cat "$T/c.err")"
	OUT=$(sed -n "${cn}p" "$T/c.out")
}
j() { jq -r "$1" <<<"$OUT"; }
count() { # APP primary|replica
	if [ "$2" = replica ]; then server_backends "$1" replica; else server_backends "$1"; fi
}
# where APP PRIMARY REPLICA: the servers' view, once backends that are
# going have gone.
where_ok() { [ "$(count "$1" primary)" = "$2" ] && [ "$(count "$1" replica)" = "$3" ]; }
where() {
	wait_until 5 where_ok "$@" || fail "$1: expected $2 on the primary and $3 on the replica, got $(count "$1" primary) and $(count "$1" replica): $(server_activity "$1" "pid, state, query")"
}
# noticed N: both processes have logged read-only switching N times in all.
noticed() { ro_noticed "$T/shim.log" 'on|off' "$1"; }
RESET_MSG='^pqshim: the connection to the primary was closed: read-only is now on \(on_switch = reset, policy [^)]*\); reconnect'

py read
assert_eq "$(j '[.ok, .recovery] | map(tostring) | join(" ")')" "true false" "psycopg2: first read on the primary"
c read
assert_match "$OUT" '^ok f [0-9]+ OK$' "C: first read on the primary"
where "$PYAPP" 1 0
where "$CAPP" 1 0

# --- the flag appears: the next statement fails, the reconnect lands on the
# replica. (Used as soon as each process has noticed, before the shim's own
# clean-up of idle connections, ~1 s later, can get there first; either way
# the statement must fail the same way.)
touch "$FLAG"
wait_until 5 noticed 2 || fail "the programs did not notice the flag: $(cat "$T/shim.log")"
py read
assert_eq "$(j .ok)" false "psycopg2: the first statement after the flag fails ($OUT)"
assert_match "$(j .error)" "$RESET_MSG" "psycopg2: the reset message"
assert_match "$(j .error)" "policy $POL\\)" "psycopg2: the message names the policy"
assert_eq "$(j .closed)" 2 "psycopg2: the connection is broken (closed = 2)"
assert_eq "$(j '[.retry.ok, .retry.recovery] | map(tostring) | join(" ")')" "true true" \
	"psycopg2: its reconnect lands on the replica ($OUT)"
c read
assert_match "$OUT" '^error BAD 08006 pqshim: the connection to the primary was closed: read-only is now on \(on_switch = reset' \
	"C: the first statement after the flag fails, CONNECTION_BAD"
c read
assert_match "$OUT" '^error BAD ' "C: still CONNECTION_BAD until the program reconnects"
c reset
assert_eq "$OUT" "reset OK" "C: PQreset"
c read
assert_match "$OUT" '^ok t [0-9]+ OK$' "C: after PQreset, on the replica"
where "$PYAPP" 0 1
where "$CAPP" 0 1
S=$(stat_json "$POL")
assert_eq "$(jq -c '[.connections[] | .target] | sort' <<<"$S")" '["replica","replica"]' "stat: both on the replica"
assert_eq "$(jq .totals.migrations <<<"$S")" 0 "stat: reset moves nothing by itself"

# --- the flag goes while both sit idle: ~1 s later the shim ends their
# backends on the replica; the next statement fails, the reconnect lands on
# the primary.
rm -f "$FLAG"
wait_until 5 noticed 4 || fail "the programs did not notice the flag going: $(cat "$T/shim.log")"
where "$PYAPP" 0 0
where "$CAPP" 0 0
py read
assert_eq "$(j .ok)" false "psycopg2: the first statement after the flag went fails ($OUT)"
assert_match "$(j .error)" '^pqshim: the connection to the replica was closed: read-only is now off \(on_switch = reset' \
	"psycopg2: the reset message (read-only off)"
assert_eq "$(j '[.retry.ok, .retry.recovery] | map(tostring) | join(" ")')" "true false" \
	"psycopg2: its reconnect lands on the primary ($OUT)"
c read
assert_match "$OUT" '^error BAD 08006 pqshim: the connection to the replica was closed: read-only is now off' \
	"C: the first statement after the flag went fails"
c reset
assert_eq "$OUT" "reset OK" "C: PQreset"
c read
assert_match "$OUT" '^ok f [0-9]+ OK$' "C: after PQreset, on the primary"
where "$PYAPP" 1 0
where "$CAPP" 1 0

# --- PQreset on a healthy connection the policy no longer allows (no
# statement first): it reconnects where the policy says; and again with
# PQresetStart/PQresetPoll.
touch "$FLAG"
wait_until 5 noticed 6 || fail "the programs did not notice the flag: $(cat "$T/shim.log")"
c reset
assert_eq "$OUT" "reset OK" "C: PQreset while read-only"
c read
assert_match "$OUT" '^ok t [0-9]+ OK$' "C: PQreset landed on the replica"
where "$CAPP" 0 1
rm -f "$FLAG"
wait_until 5 noticed 8 || fail "the programs did not notice the flag going: $(cat "$T/shim.log")"
c resetstart
assert_eq "$OUT" "resetstart 1 OK" "C: PQresetStart/PQresetPoll after the flag went"
c read
assert_match "$OUT" '^ok f [0-9]+ OK$' "C: PQresetStart landed on the primary"
where "$CAPP" 1 0

held_end py 0
held_end c 0
assert_eq "$(tail -n 1 "$T/c.out")" "same yes" "C: the program's PGconn * never changed"
where "$PYAPP" 0 0
where "$CAPP" 0 0
echo "ok: on_switch = reset: the statement fails with the pqshim message, reconnects follow the policy"
