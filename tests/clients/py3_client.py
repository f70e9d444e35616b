#!/usr/bin/python3
"""psycopg 3 client, forced onto the pure-Python (ctypes) implementation.

Connection parameters come from the PG* environment.  Usage:

    py3_client.py [--app NAME] [--stmts K] [--pipeline P] [--copy R]

Two connections, both with a prepare_threshold too high to be reached (no
automatic prepares, so the statement counts are exact; None would also turn
off prepare=True):

 connection A, main thread, autocommit                  statements  xacts
   CREATE TABLE IF NOT EXISTS; DELETE this app's rows        2          2
   K INSERTs with parameters (PQsendQueryParams)              K          K
   one INSERT executed twice with prepare=True                3          3
     (PQsendPrepare, PQsendQueryPrepared x2)
   pipeline (`with conn.pipeline()`): P INSERTs, one Sync     P     1 .. P
   COPY FROM STDIN of R rows (write_row)                      1          1
   COPY TO STDOUT reading them back (rows())                  1          1

 connection B, its own thread, autocommit off
   `with conn.transaction()`: BEGIN, K INSERTs, COMMIT      K + 2        1
   implicit transaction: BEGIN, 2 INSERTs, conn.rollback()    4          1
   SELECT count(*) of this app's rows (implicit BEGIN),
     conn.commit()                                            3          1

Rows left in table py3_t for this app: K + 2 + P + R (connection A) + K (B).
Output: "PID <pid>", "CONN {json}" per connection (its thread's native tid),
"READY" when both are done and still open; then waits for EOF on stdin,
closes each connection in the thread that opened it, prints "DONE {json}",
exits 0.  Any error: message on stderr, exit 1.
"""
import os

os.environ["PSYCOPG_IMPL"] = "python"        # the ctypes implementation

import argparse   # noqa: E402
import json       # noqa: E402
import sys        # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402

import psycopg    # noqa: E402

TABLE = "py3_t"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def connect(app, autocommit):
    return psycopg.connect("", application_name=app, autocommit=autocommit,
                           prepare_threshold=1000000)


def setup_a(args):
    conn = connect(args.app, True)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS " + TABLE + " (app text, who text, n int)")
    cur.execute("DELETE FROM " + TABLE + " WHERE app = %s", (args.app,))
    return conn


def work_a(args, conn):
    K, P, R, app = args.stmts, args.pipeline, args.copy, args.app
    cur = conn.cursor()
    ins = "INSERT INTO " + TABLE + " (app, who, n) VALUES (%s, %s, %s)"
    for i in range(K):
        cur.execute(ins, (app, "a", i))
    cur.execute(ins, (app, "a_prepared", 1), prepare=True)
    cur.execute(ins, (app, "a_prepared", 2), prepare=True)
    with conn.pipeline():
        for i in range(P):
            cur.execute(ins, (app, "a_pipeline", i))
    if conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
        raise RuntimeError("still in pipeline mode")
    with cur.copy("COPY " + TABLE + " (app, who, n) FROM STDIN") as copy:
        for i in range(R):
            copy.write_row((app, "a_copy", i))
    got = []
    with cur.copy("COPY (SELECT n FROM " + TABLE + " WHERE app = '%s' AND who = 'a_copy'"
                  " ORDER BY n) TO STDOUT" % app.replace("'", "''")) as copy:
        for row in copy.rows():
            got.append(int(row[0]))
    if got != list(range(R)):
        raise RuntimeError("COPY TO read %d rows, expected %d" % (len(got), R))


def work_b(args):
    K, app = args.stmts, args.app
    conn = connect(app, False)
    cur = conn.cursor()
    ins = "INSERT INTO " + TABLE + " (app, who, n) VALUES (%s, %s, %s)"
    with conn.transaction():
        for i in range(K):
            cur.execute(ins, (app, "b", i))
    cur.execute(ins, (app, "b_rolled_back", 1))
    cur.execute(ins, (app, "b_rolled_back", 2))
    conn.rollback()
    cur.execute("SELECT count(*) FROM " + TABLE + " WHERE app = %s AND who = 'b'", (app,))
    n = cur.fetchone()[0]
    conn.commit()
    if n != K:
        raise RuntimeError("B sees %d rows, expected %d" % (n, K))
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("B not idle after commit")
    return conn


class Runner(threading.Thread):
    def __init__(self, name, fn, args, release):
        super().__init__(name=name)
        self.fn, self.args, self.release = fn, args, release
        self.ready = threading.Event()
        self.error = None
        self.tid = None

    def run(self):
        self.tid = threading.get_native_id()
        conn = None
        try:
            conn = self.fn(self.args)
        except BaseException as e:  # noqa
            traceback.print_exc()
            self.error = "%s: %s" % (type(e).__name__, str(e).strip())
        self.ready.set()
        self.release.wait()
        if conn is not None:
            try:
                conn.close()
            except BaseException as e:  # noqa
                self.error = self.error or "close: %s" % e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default=os.environ.get("PQT_APP", "pqt_py3"))
    ap.add_argument("--stmts", type=int, default=10)
    ap.add_argument("--pipeline", type=int, default=8)
    ap.add_argument("--copy", type=int, default=50)
    args = ap.parse_args()
    if psycopg.pq.__impl__ != "python":
        sys.stderr.write("py3_client: psycopg implementation is %r, not 'python'\n"
                         % psycopg.pq.__impl__)
        sys.exit(1)
    out("PID %d" % os.getpid())

    release = threading.Event()
    a_tid = threading.get_native_id()          # A in the main thread
    a_error = None
    conn_a = None
    try:
        conn_a = setup_a(args)                 # the table exists before B starts
    except BaseException as e:  # noqa
        traceback.print_exc()
        sys.stderr.write("py3_client: set-up: %s\n" % e)
        sys.exit(1)
    b = Runner("B", work_b, args, release)     # B in its own thread
    b.start()
    try:
        work_a(args, conn_a)
    except BaseException as e:  # noqa
        traceback.print_exc()
        a_error = "%s: %s" % (type(e).__name__, str(e).strip())
    b.ready.wait()
    out("CONN " + json.dumps({"name": "A", "tid": a_tid, "autocommit": True}))
    out("CONN " + json.dumps({"name": "B", "tid": b.tid, "autocommit": False}))
    if not (a_error or b.error):
        out("READY")
        sys.stdin.read()
    release.set()
    b.join()
    if conn_a is not None:
        try:
            conn_a.close()
        except BaseException as e:  # noqa
            a_error = a_error or "close: %s" % e
    bad = [(n, err) for n, err in (("A", a_error), ("B", b.error)) if err]
    if bad:
        for name, err in bad:
            sys.stderr.write("py3_client: connection %s: %s\n" % (name, err))
        sys.exit(1)
    out("DONE " + json.dumps({"pid": os.getpid(), "impl": psycopg.pq.__impl__,
                              "rows": 2 * args.stmts + 2 + args.pipeline + args.copy}))


if __name__ == "__main__":
    main()
