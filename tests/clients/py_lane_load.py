#!/usr/bin/python3
"""psycopg2 load for the lane tests (tests/integration/t_lane_*.sh): every
transaction leaves the server's own evidence of when it ran.

Connection parameters come from the PG* environment.  Usage:

    py_lane_load.py --app NAME [--threads N] [--seconds S | --count K]
                    [--sleep X] [--table T] [--delay D]

N threads (default 1), each with its own connection (application_name
NAME), wait D seconds (default 0), then loop for S seconds (or K
transactions each): asked = time.time(); BEGIN; SELECT pg_sleep(X);
INSERT INTO T (app, asked, t0, t1) VALUES (NAME, to_timestamp(asked),
now(), clock_timestamp()); COMMIT.  now() is the transaction's start as the
server saw it (BEGIN arrived), clock_timestamp() its end but for the
COMMIT: [t0, t1] lies inside the time its slot was held.  T (default
lane_xact) must exist: app text, asked, t0, t1 timestamptz.

Prints "READY" once every thread is connected, then at the end "COUNTS
[...]" and "DONE", exit 0.  An error: "ERROR <pgcode> <message>" on
stdout, the same on stderr, exit 1.
"""
import argparse
import json
import os
import sys
import threading
import time

import psycopg2

os.environ.setdefault("PGDATESTYLE", "ISO, MDY")


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Worker(threading.Thread):
    def __init__(self, a, go):
        super().__init__()
        self.a, self.go = a, go
        self.connected = threading.Event()
        self.count, self.error, self.conn = 0, None, None

    def run(self):
        a = self.a
        try:
            self.conn = psycopg2.connect("", application_name=a.app)
            self.conn.autocommit = True
        except BaseException as e:  # noqa
            self.error = (None, "connect: %s" % str(e).strip())
            self.connected.set()
            return
        self.connected.set()
        self.go.wait()
        time.sleep(a.delay)
        try:
            cur = self.conn.cursor()
            deadline = time.monotonic() + a.seconds
            while (self.count < a.count) if a.count else (time.monotonic() < deadline):
                asked = time.time()
                cur.execute("BEGIN")
                cur.execute("SELECT pg_sleep(%s)", (a.sleep,))
                cur.execute("INSERT INTO " + a.table + " (app, asked, t0, t1) VALUES "
                            "(%s, to_timestamp(%s), now(), clock_timestamp())", (a.app, asked))
                cur.execute("COMMIT")
                self.count += 1
        except BaseException as e:  # noqa
            self.error = (getattr(e, "pgcode", None), str(e).strip())
        try:
            self.conn.close()
        except BaseException:  # noqa
            pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--app", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--sleep", type=float, default=0.03)
    p.add_argument("--table", default="lane_xact")
    p.add_argument("--delay", type=float, default=0)
    a = p.parse_args()
    go = threading.Event()
    ws = [Worker(a, go) for _ in range(a.threads)]
    for w in ws:
        w.start()
    for w in ws:
        w.connected.wait()
    out("READY")
    go.set()
    for w in ws:
        w.join()
    errs = [w.error for w in ws if w.error]
    if errs:
        for code, msg in errs:
            out("ERROR %s %s" % (code, msg.replace("\n", " ")))
            sys.stderr.write("py_lane_load: %s %s\n" % (code, msg))
        sys.exit(1)
    out("COUNTS " + json.dumps([w.count for w in ws]))
    out("DONE")


main()
