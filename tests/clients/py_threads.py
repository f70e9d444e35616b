#!/usr/bin/python3
"""psycopg2 client: N threads, each with its own connection, deterministic work.

Connection parameters come from the PG* environment.  Usage:

    py_threads.py [--app NAME] [--threads N] [--stmts K]

Threads and their work (K = --stmts, N >= 5):
  thread 0 and 5..N-1  "plain"  autocommit, K INSERTs
  thread 1             "xact"   3 transactions of K INSERTs committed with
                                conn.commit() (psycopg2's implicit BEGIN), one
                                transaction of 2 INSERTs rolled back, then
                                autocommit with an explicit
                                BEGIN; K INSERTs; COMMIT
  thread 2             "copy"   COPY FROM STDIN of 10*K rows (copy_expert),
                                COPY TO STDOUT reading them back, commit
  thread 3             "named"  named (server-side) cursor over
                                generate_series(1, 10*K), fetchmany(30) until
                                empty, close, INSERT the sum, commit
  thread 4             "async"  async connection (async_=1, select() poll
                                loop), K INSERTs

Before the threads start, the main thread opens a set-up connection
(autocommit: CREATE TABLE IF NOT EXISTS, DELETE of this app's old rows) and
closes it.

Output on stdout: "PID <pid>", one "THREAD {json}" line per worker (role,
native tid, rows written), then "READY" once every worker has done its work
while its connection is still open.  The program then waits for EOF on stdin,
each worker closes its own connection in its own thread, and the program
prints "DONE {json}" and exits 0.  Any error: message on stderr, exit 1.
"""
import argparse
import io
import json
import os
import select
import sys
import threading
import traceback

import psycopg2
import psycopg2.extensions

# psycopg2 sends "SET DATESTYLE TO 'ISO'" at connect when the server's
# DateStyle does not start with ISO; pin it so the statement count is exact.
os.environ.setdefault("PGDATESTYLE", "ISO, MDY")

TABLE = "py_threads_t"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_async(conn):
    """psycopg2's documented poll loop for asynchronous connections."""
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], 10)
        elif state == psycopg2.extensions.POLL_READ:
            select.select([conn.fileno()], [], [], 10)
        else:
            raise psycopg2.OperationalError("poll() returned %s" % state)


class Worker(threading.Thread):
    def __init__(self, idx, role, args, release):
        super().__init__(name="%s-%d" % (role, idx))
        self.idx = idx
        self.role = role
        self.args = args
        self.release = release
        self.ready = threading.Event()
        self.error = None
        self.tid = None
        self.rows = 0
        self.conn = None

    def connect(self, **kw):
        return psycopg2.connect("", application_name=self.args.app, **kw)

    def ins(self, cur, n, tag=None):
        cur.execute("INSERT INTO " + TABLE + " (app, role, n) VALUES (%s, %s, %s)",
                    (self.args.app, tag or self.role, n))

    # --- roles -----------------------------------------------------------
    def do_plain(self):
        K = self.args.stmts
        self.conn = self.connect()
        self.conn.autocommit = True
        cur = self.conn.cursor()
        for i in range(K):
            self.ins(cur, i, "plain%d" % self.idx)
        self.rows = K

    def do_xact(self):
        K = self.args.stmts
        self.conn = c = self.connect()
        cur = c.cursor()
        for t in range(3):                 # implicit BEGIN ... conn.commit()
            for i in range(K):
                self.ins(cur, t * K + i)
            c.commit()
        self.ins(cur, -1, "xact_rolled_back")   # BEGIN, 2 INSERTs, ROLLBACK
        self.ins(cur, -2, "xact_rolled_back")
        c.rollback()
        c.autocommit = True                # explicit BEGIN ... COMMIT
        cur.execute("BEGIN")
        for i in range(K):
            self.ins(cur, 3 * K + i)
        cur.execute("COMMIT")
        if c.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            raise RuntimeError("xact: connection not idle after COMMIT")
        self.rows = 4 * K

    def do_copy(self):
        R = 10 * self.args.stmts
        self.conn = c = self.connect()
        cur = c.cursor()
        data = "".join("%s\tcopy\t%d\n" % (self.args.app, i) for i in range(R))
        cur.copy_expert("COPY " + TABLE + " (app, role, n) FROM STDIN", io.StringIO(data))
        buf = io.StringIO()
        cur.copy_expert("COPY (SELECT n FROM " + TABLE + " WHERE app = '%s' AND role = 'copy' "
                        "ORDER BY n) TO STDOUT" % self.args.app.replace("'", "''"), buf)
        got = [int(x) for x in buf.getvalue().split()]
        if got != list(range(R)):
            raise RuntimeError("copy: read back %d rows, expected %d" % (len(got), R))
        c.commit()
        self.rows = R

    def do_named(self):
        M = 10 * self.args.stmts
        self.conn = c = self.connect()
        cur = c.cursor("pqt_named_%d" % self.idx)
        cur.execute("SELECT generate_series(1, %s)", (M,))
        total, fetches = 0, 0
        while True:
            rows = cur.fetchmany(30)
            fetches += 1
            if not rows:
                break
            total += sum(r[0] for r in rows)
        cur.close()
        if total != M * (M + 1) // 2:
            raise RuntimeError("named: sum %d" % total)
        self.ins(c.cursor(), total)
        c.commit()
        self.rows = 1
        self.fetches = fetches

    def do_async(self):
        K = self.args.stmts
        self.conn = c = self.connect(async_=1)
        wait_async(c)
        cur = c.cursor()
        for i in range(K):
            cur.execute("INSERT INTO " + TABLE + " (app, role, n) VALUES (%s, 'async', %s)",
                        (self.args.app, i))
            wait_async(c)
        self.rows = K

    def run(self):
        self.tid = threading.get_native_id()
        try:
            getattr(self, "do_" + self.role)()
        except BaseException as e:  # noqa
            self.error = "%s: %s" % (type(e).__name__, str(e).strip())
            traceback.print_exc()
        self.ready.set()
        self.release.wait()
        try:
            if self.conn is not None:
                self.conn.close()      # PQfinish from the opener thread
        except BaseException as e:  # noqa
            self.error = self.error or "close: %s" % e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default=os.environ.get("PQT_APP", "pqt_py_threads"))
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--stmts", type=int, default=10)
    args = ap.parse_args()
    if args.threads < 5:
        ap.error("--threads must be >= 5")

    out("PID %d" % os.getpid())
    setup = psycopg2.connect("", application_name=args.app)
    setup.autocommit = True
    cur = setup.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS " + TABLE + " (app text, role text, n bigint)")
    cur.execute("DELETE FROM " + TABLE + " WHERE app = %s", (args.app,))
    setup.close()

    roles = ["plain", "xact", "copy", "named", "async"] + ["plain"] * (args.threads - 5)
    release = threading.Event()
    workers = [Worker(i, r, args, release) for i, r in enumerate(roles)]
    for w in workers:
        w.start()
    for w in workers:
        w.ready.wait()
    errors = [(w.name, w.error) for w in workers if w.error]
    for w in workers:
        out("THREAD " + json.dumps({"idx": w.idx, "role": w.role, "tid": w.tid,
                                     "rows": w.rows}))
    if not errors:
        out("READY")
        sys.stdin.read()            # hold until EOF
    release.set()
    for w in workers:
        w.join()
    errors = [(w.name, w.error) for w in workers if w.error]
    if errors:
        for name, err in errors:
            sys.stderr.write("py_threads: %s: %s\n" % (name, err))
        sys.exit(1)
    out("DONE " + json.dumps({"pid": os.getpid(), "threads": len(workers),
                              "rows": sum(w.rows for w in workers)}))


if __name__ == "__main__":
    main()
