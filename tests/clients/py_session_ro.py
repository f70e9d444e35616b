#!/usr/bin/python3
"""tests/clients/py_session_ro.py - a psycopg2 session that changed its
settings (SET search_path, SET work_mem, set_config of statement_timeout,
SET ROLE) before its connection moves to the replica.

Prints one JSON line of what the session looks like (settings, current
user, where it is, a table found through search_path), READY, then the same
line again after each line on stdin.  Exits at EOF.
"""
import json, sys
import psycopg2

app = sys.argv[sys.argv.index("--app") + 1]
conn = psycopg2.connect(application_name=app)
conn.autocommit = True
cur = conn.cursor()
cur.execute("set search_path = pqt_s, public")
cur.execute("set work_mem = '7MB'")
cur.execute("select set_config('statement_timeout', '42s', false)")
cur.execute("set role pqt_app")


def look(step):
    out = dict(step=step)
    try:
        cur.execute("select current_setting('search_path'), current_setting('work_mem'),"
                    " current_setting('statement_timeout'), current_user, pg_is_in_recovery(),"
                    " (select count(*) from session_t)")
        (out["search_path"], out["work_mem"], out["timeout"], out["user"], out["recovery"],
         out["rows"]) = cur.fetchone()
    except psycopg2.Error as e:
        out["error"] = "%s %s" % (e.pgcode, str(e).strip())
    print(json.dumps(out), flush=True)


look("start")
print("READY", flush=True)
for line in sys.stdin:
    look(line.strip())
