#!/usr/bin/python3
"""psycopg2 load for the [cap] tests (tests/integration/t_cap_*.sh), and a
sampler of the server's view.

Connection parameters come from the PG* environment.  Usage:

    py_cap_load.py load --app NAME [--threads N] [--seconds S] [--sleep X]
                        [--mode xact|auto] [--stop-file F]
    py_cap_load.py sample --prefix P [--seconds S] [--interval I] [--stop-file F]
    py_cap_load.py probe --app NAME

load: N threads, each with its own connection (autocommit on; application_name
  NAME).  Once every thread is connected the program prints "PID <pid>" and
  "READY", and the threads start together.  Each loops until S seconds have
  passed (or F exists): --mode xact runs BEGIN; SELECT pg_sleep(X); COMMIT as
  three statements, --mode auto one autocommit SELECT pg_sleep(X).  Each
  thread then closes its own connection.  Output at the end:
  "COUNTS [c0, c1, ...]" (completed transactions per thread), "DONE" and exit
  0.  Any error: message on stderr, exit 1.

sample: run WITHOUT the shim.  Every I seconds (default 0.02), for S seconds
  or until F exists, one query counts the backends whose application_name
  starts with P and that are busy: state 'active' or 'idle in transaction%'.
  Two counts per sample:
    raw     every busy backend the sample saw;
    strict  only those busy since before the sample's statement began
            (xact_start < statement_timestamp()).
  The server copies the backends' states one after the other, not at one
  instant, so "raw" may count a backend that became busy (after another one
  went idle) while the copy ran.  Each "strict" backend was busy without a
  break from its xact_start until the copy read it, after the sample's
  statement began: all of them were busy together at that instant, so a
  strict count above the cap is a real overlap.  Backends of a transaction
  that the cap's client holds a slot for are busy only while it holds it:
  the server shows a backend active after the client took its slot, and
  idle (before it sends ReadyForQuery) before the client gives it back.
  Output: "PID <pid>", "READY" after the first sample, then at the end
  "SAMPLE {json}": samples, peak_raw, peak_strict, hist_strict (samples per
  strict count), and exit 0.

probe: a scripted client for step-by-step tests.  Prints "PID <pid>" and
  "READY", then reads commands from stdin, one a line:
      THREAD connect CONN      open connection CONN (autocommit on,
                               application_name NAME or NAME_CONN with --suffix)
      THREAD exec CONN SQL...  run SQL on CONN, fetch its rows if any
      THREAD close CONN        close CONN
      THREAD exit              the thread ends (its connections stay open)
  THREAD names a worker thread, started on first use; each runs its commands
  in order, and threads run at the same time (a command that blocks holds up
  only its own thread).  Each command, when done, prints one line
  "R {json}": seq (1 for the first command read, ...), thread, tid (native),
  cmd, conn, ok, and on error cls (the exception class), pgcode, msg; rows;
  t0 and t1 (time.time() when it started and ended) and elapsed (seconds).
  A command's failure is reported, not fatal.  EOF on stdin: every thread
  finishes its commands, every connection still open is closed (from the
  main thread), "DONE", exit 0.
"""
import argparse
import json
import os
import queue
import sys
import threading
import time

import psycopg2
import psycopg2.errors  # noqa: F401 (the classes named by pgcode)

os.environ.setdefault("PGDATESTYLE", "ISO, MDY")   # keep psycopg2 from SETting it


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def stop_now(deadline, stop_file):
    return time.monotonic() >= deadline or (stop_file and os.path.exists(stop_file))


class Worker(threading.Thread):
    def __init__(self, idx, args, go):
        super().__init__(name="load-%d" % idx)
        self.args, self.go = args, go
        self.connected = threading.Event()
        self.count = 0
        self.error = None
        self.conn = None

    def run(self):
        a = self.args
        try:
            self.conn = psycopg2.connect("", application_name=a.app)
            self.conn.autocommit = True
        except BaseException as e:  # noqa
            self.error = "connect: %s: %s" % (type(e).__name__, str(e).strip())
            self.connected.set()
            return
        self.connected.set()
        self.go.wait()
        try:
            cur = self.conn.cursor()
            deadline = time.monotonic() + a.seconds
            while not stop_now(deadline, a.stop_file):
                if a.mode == "xact":
                    cur.execute("BEGIN")
                    cur.execute("SELECT pg_sleep(%s)", (a.sleep,))
                    cur.execute("COMMIT")
                else:
                    cur.execute("SELECT pg_sleep(%s)", (a.sleep,))
                self.count += 1
        except BaseException as e:  # noqa
            self.error = "%s: %s" % (type(e).__name__, str(e).strip())
        try:
            self.conn.close()        # in the thread that opened it
        except BaseException as e:  # noqa
            self.error = self.error or "close: %s" % e


def load(args):
    go = threading.Event()
    workers = [Worker(i, args, go) for i in range(args.threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.connected.wait()
    if not any(w.error for w in workers):
        out("PID %d" % os.getpid())
        out("READY")
    go.set()
    for w in workers:
        w.join()
    errors = [(w.name, w.error) for w in workers if w.error]
    if errors:
        for name, err in errors:
            sys.stderr.write("py_cap_load: %s: %s\n" % (name, err))
        sys.exit(1)
    out("COUNTS " + json.dumps([w.count for w in workers]))
    out("DONE")


SAMPLE_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE xact_start < statement_timestamp())
FROM pg_stat_activity
WHERE application_name LIKE %s
  AND pid <> pg_backend_pid()
  AND (state = 'active' OR state LIKE 'idle in transaction%%')
"""


def sample(args):
    if os.environ.get("LD_PRELOAD"):
        sys.stderr.write("py_cap_load sample: must run without the shim (LD_PRELOAD set)\n")
        sys.exit(2)
    conn = psycopg2.connect("", application_name="pqt_sampler")
    conn.autocommit = True
    cur = conn.cursor()
    pattern = args.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    out("PID %d" % os.getpid())
    n, peak_raw, peak_strict, hist = 0, 0, 0, {}
    deadline = time.monotonic() + args.seconds
    while True:
        t0 = time.monotonic()
        cur.execute(SAMPLE_SQL, (pattern,))
        raw, strict = cur.fetchone()
        n += 1
        peak_raw, peak_strict = max(peak_raw, raw), max(peak_strict, strict)
        hist[strict] = hist.get(strict, 0) + 1
        if n == 1:
            out("READY")
        if stop_now(deadline, args.stop_file):
            break
        left = args.interval - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
    conn.close()
    out("SAMPLE " + json.dumps({"samples": n, "peak_raw": peak_raw, "peak_strict": peak_strict,
                                "hist_strict": {str(k): v for k, v in sorted(hist.items())}}))


class Prober(threading.Thread):
    def __init__(self, name, args, conns, lock):
        super().__init__(name=name, daemon=True)
        self.args, self.conns, self.lock = args, conns, lock
        self.q = queue.Queue()

    def run(self):
        tid = threading.get_native_id()
        while True:
            item = self.q.get()
            if item is None:
                return
            seq, cmd, conn, sql = item
            r = {"seq": seq, "thread": self.name, "tid": tid, "cmd": cmd, "conn": conn}
            r["t0"] = time.time()
            m0 = time.monotonic()
            try:
                if cmd == "connect":
                    app = self.args.app + ("_" + conn if self.args.suffix else "")
                    c = psycopg2.connect("", application_name=app)
                    c.autocommit = True
                    with self.lock:
                        self.conns[conn] = c
                elif cmd == "exec":
                    cur = self.conns[conn].cursor()
                    cur.execute(sql)
                    r["rows"] = cur.fetchall() if cur.description else None
                elif cmd == "close":
                    with self.lock:
                        c = self.conns.pop(conn)
                    c.close()
                elif cmd != "exit":
                    raise ValueError("unknown command %r" % cmd)
                r["ok"] = True
            except BaseException as e:  # noqa
                r.update(ok=False, cls=type(e).__name__, pgcode=getattr(e, "pgcode", None),
                         msg=str(e).strip())
            r["elapsed"] = time.monotonic() - m0
            r["t1"] = time.time()
            out("R " + json.dumps(r, default=str))
            if cmd == "exit":
                return


def probe(args):
    conns, lock, threads, every, seq = {}, threading.Lock(), {}, [], 0
    out("PID %d" % os.getpid())
    out("READY")
    for line in sys.stdin:
        words = line.split(None, 3)
        if not words:
            continue
        seq += 1
        name, cmd = words[0], words[1] if len(words) > 1 else ""
        conn = words[2] if len(words) > 2 else None
        sql = words[3].strip() if len(words) > 3 else None
        th = threads.get(name)
        if th is None:                  # new, or its last command was exit
            th = threads[name] = Prober(name, args, conns, lock)
            every.append(th)
            th.start()
        th.q.put((seq, cmd, conn, sql))
        if cmd == "exit":
            del threads[name]
    for th in every:
        th.q.put(None)
    for th in every:
        th.join()
    for c in conns.values():
        c.close()
    out("DONE")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("--app", required=True)
    lp.add_argument("--threads", type=int, default=8)
    lp.add_argument("--seconds", type=float, default=4.0)
    lp.add_argument("--sleep", type=float, default=0.01)
    lp.add_argument("--mode", choices=("xact", "auto"), default="xact")
    lp.add_argument("--stop-file")
    sp = sub.add_parser("sample")
    sp.add_argument("--prefix", required=True)
    sp.add_argument("--seconds", type=float, default=10.0)
    sp.add_argument("--interval", type=float, default=0.02)
    sp.add_argument("--stop-file")
    pp = sub.add_parser("probe")
    pp.add_argument("--app", required=True)
    pp.add_argument("--suffix", action="store_true")
    args = ap.parse_args()
    if args.cmd == "load":
        load(args)
    elif args.cmd == "sample":
        sample(args)
    else:
        probe(args)


if __name__ == "__main__":
    main()
