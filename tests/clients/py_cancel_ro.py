#!/usr/bin/python3
"""tests/clients/py_cancel_ro.py - psycopg2's connection.cancel() after the
connection moved to the replica.  psycopg2 takes its cancel object
(PQgetCancel) once, at connect: after a move it must reach the new backend.

Reads where it is (`select pg_is_in_recovery()`), prints READY, waits for a
line on stdin (the test switches read-only on meanwhile), reads again (the
statement that moves it), then runs `select pg_sleep(5)` while another
thread calls connection.cancel() 0.5 s in.  Prints one line of JSON: where
each read went, how the sleep ended and after how long; then holds the
connection until stdin closes.
"""
import json, sys, threading, time
import psycopg2, psycopg2.errors

app = sys.argv[sys.argv.index("--app") + 1]
conn = psycopg2.connect(application_name=app)
conn.autocommit = True
cur = conn.cursor()
cur.execute("select pg_is_in_recovery()")
before = cur.fetchone()[0]
print("READY", flush=True)
sys.stdin.readline()
cur.execute("select pg_is_in_recovery(), pg_backend_pid()")
after, pid = cur.fetchone()
threading.Timer(0.5, conn.cancel).start()
t0 = time.monotonic()
try:
    cur.execute("select pg_sleep(5)")
    end = "completed"
except psycopg2.errors.QueryCanceled:
    end = "canceled"
except psycopg2.Error as e:
    end = "error: %s" % str(e).strip()
print(json.dumps(dict(before=before, after=after, backend=pid, sleep=end,
                      seconds=round(time.monotonic() - t0, 3))), flush=True)
sys.stdin.read()             # held open until the test has looked
conn.close()
