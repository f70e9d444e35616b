#!/usr/bin/python3
"""tests/clients/py_listen_ro.py - a psycopg2 connection that LISTENs on a
channel.  Prints READY; after a line on stdin runs `select 1` twice and
prints how each ended, as JSON.  Exits at EOF.
"""
import json, sys
import psycopg2

app = sys.argv[sys.argv.index("--app") + 1]
conn = psycopg2.connect(application_name=app)
conn.autocommit = True
cur = conn.cursor()
cur.execute("listen jobs")
print("READY", flush=True)
sys.stdin.readline()
out = []
for _ in range(2):
    try:
        cur.execute("select 1")
        out.append(dict(ok=True))
    except psycopg2.Error as e:
        out.append(dict(ok=False, pgcode=e.pgcode, cls=type(e).__name__,
                        msg=str(e).strip().splitlines()[0] if str(e).strip() else ""))
print(json.dumps(out), flush=True)
sys.stdin.read()
