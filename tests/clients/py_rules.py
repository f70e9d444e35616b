#!/usr/bin/python3
"""psycopg2 client that breaks the tracking rules on purpose, for
tests/integration/t_tracking_rules.sh.

Connection parameters come from the PG* environment.  Usage:

    py_rules.py --mode xthread [--app NAME] [--second M]
    py_rules.py --mode cap     [--app NAME]

xthread: the main thread (the opener) opens one connection (autocommit), runs
  CREATE TABLE IF NOT EXISTS and DELETE of this app's rows; a second thread
  then runs M INSERTs (who = 'second') on that same connection; then the
  opener runs one INSERT (who = 'opener'), which must succeed.
cap: thread 1 opens connections c1 and c2 (one SELECT 1 each), tries a third
  (c3), closes c2 and opens c4 (SELECT 1); thread 2 then opens c5 (SELECT 1).

What the shim refuses is reported, not fatal: "PID <pid>", "TIDS {json}",
"RESULT {json}" (for each probe: "ok" or the error message), then "READY";
the program then waits for EOF on stdin, closes every connection from the
thread that opened it, prints "DONE" and exits 0.  Anything else that fails
(the opener's own statements, thread 2's connect in cap mode is reported) is
an error: message on stderr, exit 1.
"""
import argparse
import json
import os
import sys
import threading

import psycopg2

os.environ.setdefault("PGDATESTYLE", "ISO, MDY")

TABLE = "py_rules_t"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err_text(e):
    return str(e).strip()


def connect(app):
    c = psycopg2.connect("", application_name=app)
    c.autocommit = True
    return c


def in_thread(fn):
    """Run fn in a new thread; return (its native tid, result, exception)."""
    box = {}

    def body():
        box["tid"] = threading.get_native_id()
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa
            box["error"] = e
    t = threading.Thread(target=body)
    t.start()
    t.join()
    return box["tid"], box.get("result"), box.get("error")


class Holder(threading.Thread):
    """A thread that runs `work`, waits for the release, then runs `finish`."""

    def __init__(self, work, finish):
        super().__init__()
        self.work, self.finish = work, finish
        self.ready = threading.Event()
        self.release = threading.Event()
        self.tid = None
        self.result = None
        self.error = None

    def run(self):
        self.tid = threading.get_native_id()
        try:
            self.result = self.work()
        except BaseException as e:  # noqa
            self.error = "%s: %s" % (type(e).__name__, err_text(e))
        self.ready.set()
        self.release.wait()
        try:
            self.finish()
        except BaseException as e:  # noqa
            self.error = self.error or "close: %s" % err_text(e)


def mode_xthread(args):
    app = args.app
    conn = connect(app)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS " + TABLE + " (app text, who text, n int)")
    cur.execute("DELETE FROM " + TABLE + " WHERE app = %s", (app,))

    def second():
        outcomes = []
        c2 = conn.cursor()
        for i in range(args.second):
            try:
                c2.execute("INSERT INTO " + TABLE + " (app, who, n) VALUES (%s, 'second', %s)",
                           (app, i))
                outcomes.append("ok")
            except psycopg2.Error as e:
                outcomes.append(err_text(e))
        return outcomes
    tid2, outcomes, exc = in_thread(second)
    if exc is not None:
        raise exc
    # the opener must still be able to work
    cur.execute("INSERT INTO " + TABLE + " (app, who, n) VALUES (%s, 'opener', 1)", (app,))
    cur.execute("SELECT count(*) FROM " + TABLE + " WHERE app = %s AND who = 'opener'", (app,))
    if cur.fetchone()[0] != 1:
        raise RuntimeError("opener's INSERT not visible")
    if conn.closed:
        raise RuntimeError("connection closed after the second thread's attempts")
    out("PID %d" % os.getpid())
    out("TIDS " + json.dumps({"opener": threading.get_native_id(), "second": tid2}))
    out("RESULT " + json.dumps({"second": outcomes}))
    out("READY")
    sys.stdin.read()
    conn.close()


def mode_cap(args):
    app = args.app
    held1, held2 = [], []
    res = {}

    def select1(c):
        cur = c.cursor()
        cur.execute("SELECT 1")
        if cur.fetchone()[0] != 1:
            raise RuntimeError("SELECT 1")

    def t1_work():
        c1 = connect(app)
        select1(c1)
        held1.append(c1)
        c2 = connect(app)
        select1(c2)
        try:
            c3 = connect(app)
            held1.append(c3)
            res["third"] = "ok"
        except psycopg2.Error as e:
            res["third"] = err_text(e)
        c2.close()
        try:
            c4 = connect(app)
            select1(c4)
            held1.append(c4)
            res["after_close"] = "ok"
        except psycopg2.Error as e:
            res["after_close"] = err_text(e)

    def t2_work():
        try:
            c5 = connect(app)
            select1(c5)
            held2.append(c5)
            res["other_thread"] = "ok"
        except psycopg2.Error as e:
            res["other_thread"] = err_text(e)

    def closer(held):
        return lambda: [c.close() for c in held]

    t1 = Holder(t1_work, closer(held1))
    t1.start()
    t1.ready.wait()
    t2 = Holder(t2_work, closer(held2))
    t2.start()
    t2.ready.wait()
    out("PID %d" % os.getpid())
    out("TIDS " + json.dumps({"t1": t1.tid, "t2": t2.tid}))
    out("RESULT " + json.dumps(res))
    if not (t1.error or t2.error):
        out("READY")
        sys.stdin.read()
    for t in (t1, t2):
        t.release.set()
        t.join()
    bad = [t.error for t in (t1, t2) if t.error]
    if bad:
        raise RuntimeError("; ".join(bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("xthread", "cap"), required=True)
    ap.add_argument("--app", default=os.environ.get("PQT_APP", "pqt_py_rules"))
    ap.add_argument("--second", type=int, default=3)
    args = ap.parse_args()
    try:
        (mode_xthread if args.mode == "xthread" else mode_cap)(args)
    except BaseException as e:  # noqa
        sys.stderr.write("py_rules: %s: %s\n" % (type(e).__name__, err_text(e)))
        sys.exit(1)
    out("DONE")


if __name__ == "__main__":
    main()
