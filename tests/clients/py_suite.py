#!/usr/bin/env python3
"""py_suite.py SCENARIO CONNINFO: what psycopg2's own test suite does, one
scenario per run (tests/integration/t_suite_*.sh, with and without the shim).

  wait_select  green mode (psycopg2.extras.wait_select as the wait callback:
               psycopg2 then drives libpq asynchronously, PQconnectStart /
               PQconnectPoll / PQsendQuery / PQconsumeInput / PQisBusy): two
               connections of one thread, transactions, a named cursor, and a
               long query interrupted by SIGINT (wait_select cancels it:
               QueryCanceledError), the connection working afterwards
  tpc          two-phase commit: tpc_begin / tpc_prepare / tpc_commit,
               tpc_rollback of a prepared one, tpc_recover, and a transaction
               prepared on one connection committed from another (needs
               max_prepared_transactions > 0)

With SUITE_HOLD set, prints "HOLD" before closing its connections and waits
for a line on stdin.  Prints "OK SCENARIO", or "FAIL: why" (exit 1).
"""
import os
import signal
import sys
import threading
import time

import psycopg2
import psycopg2.extensions
import psycopg2.extras


def check(cond, why):
    if not cond:
        print("FAIL: " + why, flush=True)
        sys.exit(1)


def hold():
    if os.environ.get("SUITE_HOLD"):
        print("HOLD", flush=True)
        check(sys.stdin.readline() != "", "no line on stdin after HOLD")


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def finish(table, conn, *others):
    """Drop the scenario's table, hold if asked, close every connection."""
    with conn.cursor() as cur:
        cur.execute("drop table " + table)
    conn.commit()
    hold()
    for c in (conn,) + others:
        c.close()


def wait_select(dsn):
    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
    a = psycopg2.connect(dsn)
    b = psycopg2.connect(dsn)
    with a.cursor() as cur:
        cur.execute("drop table if exists suite_green; create table suite_green (n int, who text)")
    a.commit()
    for i in range(10):
        for conn, who in ((a, "a"), (b, "b")):
            with conn.cursor() as cur:
                cur.execute("insert into suite_green values (%s, %s)", (i, who))
            conn.commit()
    check(one(b, "select count(*) from suite_green") == 20, "rows written in green mode")
    b.rollback()
    with a.cursor(name="suite_named") as cur:       # a server-side cursor
        cur.itersize = 3
        cur.execute("select n from suite_green where who = 'a' order by n")
        check([r[0] for r in cur] == list(range(10)), "the named cursor's rows")
    a.commit()
    # SIGINT during a long query: wait_select cancels it (PQcancel).  A
    # background job of a script starts with SIGINT ignored: Python's own
    # handler, whatever we inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        one(a, "select pg_sleep(30)")
        check(False, "pg_sleep(30) was not interrupted")
    except psycopg2.extensions.QueryCanceledError:
        pass
    took = time.monotonic() - t0
    check(took < 20, "the cancelled query ran %.1f s" % took)
    a.rollback()
    check(one(a, "select 42") == 42, "the connection after the cancel")
    a.commit()
    finish("suite_green", a, b)


def tpc(dsn):
    a = psycopg2.connect(dsn)
    b = psycopg2.connect(dsn)
    with a.cursor() as cur:
        cur.execute("drop table if exists suite_tpc; create table suite_tpc (what text)")
    a.commit()
    for xid in a.tpc_recover():                  # left by an earlier run
        a.tpc_rollback(xid)

    def write(conn, what):
        with conn.cursor() as cur:
            cur.execute("insert into suite_tpc values (%s)", (what,))

    x1 = a.xid(1, "suite-commit", "branch")
    a.tpc_begin(x1)
    write(a, "committed")
    a.tpc_prepare()
    check(a.status == psycopg2.extensions.STATUS_PREPARED, "status after tpc_prepare")
    a.tpc_commit()
    x2 = a.xid(1, "suite-rollback", "branch")
    a.tpc_begin(x2)
    write(a, "rolled back")
    a.tpc_prepare()
    a.tpc_rollback()
    # prepared on a, committed from b after recovery
    x3 = a.xid(1, "suite-recovered", "branch")
    a.tpc_begin(x3)
    write(a, "recovered")
    a.tpc_prepare()
    a.reset()                                    # a leaves it prepared
    found = [x for x in b.tpc_recover() if x.gtrid == "suite-recovered"]
    check(len(found) == 1, "tpc_recover: %r" % (found,))
    b.tpc_commit(found[0])
    b.commit()
    with b.cursor() as cur:
        cur.execute("select what from suite_tpc order by what")
        rows = [r[0] for r in cur.fetchall()]
    check(rows == ["committed", "recovered"], "rows: %r" % (rows,))
    check(one(b, "select count(*) from pg_prepared_xacts") == 0, "prepared transactions left")
    b.rollback()
    finish("suite_tpc", b, a)


def main():
    if len(sys.argv) != 3:
        print("usage: py_suite.py wait_select|tpc CONNINFO", file=sys.stderr)
        sys.exit(2)
    scenario, dsn = sys.argv[1], sys.argv[2]
    {"wait_select": wait_select, "tpc": tpc}[scenario](dsn)
    print("OK " + scenario, flush=True)


if __name__ == "__main__":
    main()
