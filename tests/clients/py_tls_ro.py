#!/usr/bin/python3
"""tests/clients/py_tls_ro.py - one psycopg2 connection over TLS
(sslmode=require) while read-only goes on and off.

Prints READY, then one JSON line per step, each step started by a line on
stdin: where it is (`pg_is_in_recovery()`), whether the server sees TLS on
its backend (`pg_stat_ssl`), the backend's pid, and that 200 statements and
a 1 MB result went through.  Errors are reported in the line, not raised.
Exits at EOF.
"""
import json, sys
import psycopg2

dsn = sys.argv[1]
conn = psycopg2.connect(dsn)
conn.autocommit = True
cur = conn.cursor()


def step(name):
    out = dict(step=name)
    try:
        cur.execute("select pg_is_in_recovery(), ssl, pg_backend_pid() "
                    "from pg_stat_ssl where pid = pg_backend_pid()")
        out["recovery"], out["ssl"], out["backend"] = cur.fetchone()
        n = 0
        for i in range(200):
            cur.execute("select %s", (i,))
            n += cur.fetchone()[0] == i
        cur.execute("select repeat('x', 1048576)")
        out["ok"] = n == 200 and len(cur.fetchone()[0]) == 1048576
    except psycopg2.Error as e:
        out["error"] = "%s %s" % (e.pgcode, str(e).strip())
    print(json.dumps(out), flush=True)


step("start")
print("READY", flush=True)
for line in sys.stdin:
    step(line.strip())
