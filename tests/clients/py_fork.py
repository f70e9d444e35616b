#!/usr/bin/python3
"""psycopg2 client that forks: a pre-fork server in miniature.

Connection parameters come from the PG* environment.  Usage:

    py_fork.py [--app NAME] [--children C] [--stmts K] [--mode fork|mp]

1. The parent opens one connection (autocommit), creates the table, deletes
   this app's old rows and INSERTs K rows tagged "parent" (K + 2 statements).
2. It forks C children (os.fork, or multiprocessing with the "fork" start
   method for --mode mp).  Each child inherits the parent's connection object
   and NEVER uses it (using a libpq connection from two processes is misuse);
   it opens its own connection (autocommit), INSERTs K rows tagged
   "child<i>", reports its pid to the parent, waits for the release, closes
   its own connection and leaves with os._exit(0), so that the inherited
   connection is neither used nor PQfinish'ed in the child (PQfinish would
   send a Terminate message on the parent's socket).
3. Once every child is ready, the parent runs one more statement on its own
   connection (SELECT count(*) of the rows written so far, checked), prints
   "PID <parent>", "CHILD {json}" per child and "READY", then waits for EOF on
   stdin, releases the children, reaps them (any non-zero status is an error),
   runs a final SELECT count(*) (checked), closes its connection and exits 0.

Per connection, statements: parent K + 4, each child K.
"""
import argparse
import json
import multiprocessing
import os
import sys
import threading

import psycopg2

os.environ.setdefault("PGDATESTYLE", "ISO, MDY")   # keep psycopg2 from SETting it

TABLE = "py_fork_t"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def child_body(app, idx, K, ready_w, release_r):
    """Runs in the child.  Returns nothing; the caller _exits."""
    conn = psycopg2.connect("", application_name=app)
    conn.autocommit = True
    cur = conn.cursor()
    for i in range(K):
        cur.execute("INSERT INTO " + TABLE + " (app, who, n) VALUES (%s, %s, %s)",
                    (app, "child%d" % idx, i))
    os.write(ready_w, (json.dumps({"idx": idx, "pid": os.getpid(),
                                   "tid": threading.get_native_id()}) + "\n").encode())
    os.close(ready_w)
    os.read(release_r, 1)            # blocks until the parent closes its end
    conn.close()


def child_main(app, idx, K, ready_w, release_r, close_fds=()):
    code = 0
    for fd in close_fds:             # the parent's ends; else no EOF ever comes
        os.close(fd)
    try:
        child_body(app, idx, K, ready_w, release_r)
    except BaseException as e:  # noqa
        sys.stderr.write("py_fork child %d (pid %d): %s: %s\n"
                         % (idx, os.getpid(), type(e).__name__, e))
        code = 1
    sys.stderr.flush()
    os._exit(code)                   # no finalizers: the inherited conn stays untouched


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default=os.environ.get("PQT_APP", "pqt_py_fork"))
    ap.add_argument("--children", type=int, default=3)
    ap.add_argument("--stmts", type=int, default=5)
    ap.add_argument("--mode", choices=("fork", "mp"), default="fork")
    args = ap.parse_args()
    K, C = args.stmts, args.children

    conn = psycopg2.connect("", application_name=args.app)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS " + TABLE + " (app text, who text, n int)")
    cur.execute("DELETE FROM " + TABLE + " WHERE app = %s", (args.app,))
    for i in range(K):
        cur.execute("INSERT INTO " + TABLE + " (app, who, n) VALUES (%s, 'parent', %s)",
                    (args.app, i))

    release_r, release_w = os.pipe()
    children = []                      # (pid or Process, ready_r)
    for idx in range(C):
        ready_r, ready_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        if args.mode == "fork":
            pid = os.fork()
            if pid == 0:
                child_main(args.app, idx, K, ready_w, release_r, (release_w, ready_r))
            handle = pid
        else:
            ctx = multiprocessing.get_context("fork")
            handle = ctx.Process(target=child_main,
                                 args=(args.app, idx, K, ready_w, release_r,
                                       (release_w, ready_r)))
            handle.start()
        os.close(ready_w)
        children.append((handle, ready_r))
    os.close(release_r)

    infos = []
    failed = False
    for handle, ready_r in children:
        data = b""
        while True:
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            data += chunk
        os.close(ready_r)
        if not data:
            failed = True
            continue
        infos.append(json.loads(data.decode()))

    if not failed:
        cur.execute("SELECT count(*) FROM " + TABLE + " WHERE app = %s", (args.app,))
        n = cur.fetchone()[0]
        if n != K * (C + 1):
            sys.stderr.write("py_fork: %d rows, expected %d\n" % (n, K * (C + 1)))
            failed = True
        out("PID %d" % os.getpid())
        for info in infos:
            out("CHILD " + json.dumps(info))
        if not failed:
            out("READY")
            sys.stdin.read()          # hold until EOF

    os.close(release_w)               # releases every child
    for handle, _ in children:
        if args.mode == "fork":
            _, status = os.waitpid(handle, 0)
            code = os.waitstatus_to_exitcode(status)
        else:
            handle.join()
            code = handle.exitcode
        if code != 0:
            sys.stderr.write("py_fork: child exited with %s\n" % code)
            failed = True
    if failed:
        sys.exit(1)

    cur.execute("SELECT count(*) FROM " + TABLE + " WHERE app = %s", (args.app,))
    n = cur.fetchone()[0]
    if n != K * (C + 1):
        sys.stderr.write("py_fork: after children exit: %d rows\n" % n)
        sys.exit(1)
    conn.close()
    out("DONE " + json.dumps({"pid": os.getpid(), "children": C, "rows": n}))


if __name__ == "__main__":
    main()
