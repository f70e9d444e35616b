#!/usr/bin/python3
"""tests/clients/py_loop_excl.py TABLE READYFILE - one event loop thread
driving two asynchronous psycopg2 connections, x and y (application_name
loop-x, loop-y), in a set order against a migration in another process
(tests/integration/t_lane_loop_excl.sh):

  x: BEGIN (x holds the slot); prints X_HOLDS; waits until READYFILE says
     READY (the migration's client connected; it asks at once), 0.2 s more
  x: `select pg_sleep(0.5)` sent; 0.2 s later y: BEGIN sent - the loop has
     x's statement in flight: deferred (shim/defer.c)
  x's result read (a kick, x idle in its transaction), x's row, COMMIT;
  then y: its row, pg_sleep(0.2), COMMIT
Each row: (app, asked, now(), clock_timestamp()) into TABLE.  Prints
DONE, exit 0; an error: ERROR ..., exit 1.
"""
import sys, time
import psycopg2
import pqpoll

TBL = sys.argv[1]
INS = "INSERT INTO " + TBL + " (app, asked, t0, t1) VALUES (%s, to_timestamp(%s), now(), clock_timestamp())"


def wait(conn, limit=30.0):
    pqpoll.wait(conn, limit)


def run(conn, sql, args=None):
    cur = conn.cursor()
    cur.execute(sql, args)
    wait(conn)


def main():
    x = psycopg2.connect("", application_name="loop-x", async_=1)
    wait(x)
    y = psycopg2.connect("", application_name="loop-y", async_=1)
    wait(y)
    asked_x = time.time()
    run(x, "BEGIN")
    print("X_HOLDS", flush=True)
    end = time.monotonic() + 20
    while "READY" not in open(sys.argv[2]).read():
        if time.monotonic() > end:
            raise TimeoutError("the migration's client never got ready")
        time.sleep(0.05)
    time.sleep(0.2)
    cx = x.cursor()
    cx.execute("SELECT pg_sleep(0.5)")
    time.sleep(0.2)
    asked_y = time.time()
    cy = y.cursor()
    cy.execute("BEGIN")          # deferred: x's statement is in flight
    wait(x)                      # x's result: a kick
    run(x, INS, ("loop-x", asked_x))
    run(x, "COMMIT")
    wait(y)
    run(y, INS, ("loop-y", asked_y))
    run(y, "SELECT pg_sleep(0.2)")
    run(y, "COMMIT")
    print("DONE")


try:
    main()
except BaseException as e:  # noqa
    print("ERROR %s" % str(e).strip())
    sys.stderr.write("ERROR %s\n" % str(e).strip())
    sys.exit(1)
