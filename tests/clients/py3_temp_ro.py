#!/usr/bin/python3
"""tests/clients/py3_temp_ro.py - psycopg 3 (Python implementation, libpq
through ctypes) prepares a statement on a temporary table (PQprepare), which
no other session can prepare again.  Prints READY; after a line on stdin
runs `select 1` twice and prints how each ended, as JSON.  Exits at EOF.
"""
import json, os, sys
os.environ.setdefault("PSYCOPG_IMPL", "python")
import psycopg

app = sys.argv[sys.argv.index("--app") + 1]
conn = psycopg.connect(application_name=app, autocommit=True)
conn.execute("create temp table tmp_t (x int)")
conn.execute("select count(*) from tmp_t", prepare=True)
print("READY", flush=True)
sys.stdin.readline()
out = []
for _ in range(2):
    try:
        conn.execute("select 1")
        out.append(dict(ok=True))
    except psycopg.Error as e:
        out.append(dict(ok=False, sqlstate=e.sqlstate, cls=type(e).__name__,
                        msg=str(e).strip().splitlines()[0] if str(e).strip() else ""))
print(json.dumps(out), flush=True)
sys.stdin.read()
