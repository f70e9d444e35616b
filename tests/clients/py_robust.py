#!/usr/bin/python3
"""psycopg2 clients for the fault tests (tests/integration/t_robust_*.sh) and
the soak (tests/soak/), and the analysis of what they logged.

Connection parameters come from the PG* environment.  Usage:

    py_robust.py storm --app NAME --log FILE [--threads N] [--sleep X]
                       [--xact] [--seconds S]
    py_robust.py monitor --prefix P --out FILE --stop-file F [--interval I]
    py_robust.py analyze --logs GLOB --samples FILE --timeout SECONDS
    py_robust.py dead-backend --app NAME --mode async|sync
    py_robust.py lost-holder --app NAME [--looper]
    py_robust.py close-in-xact --app NAME [--tables N]
    py_robust.py thread-exit --app NAME --orphans N
    py_robust.py fork --app NAME

storm: N threads (default 2), each with its own connection, loop for S
  seconds (default: for ever) on `select pg_sleep(X)` (or, with --xact,
  BEGIN; that; COMMIT), and write one line per statement to FILE (appended,
  a whole line at a time, so that a kill -9 loses at most the statements in
  flight):
      OK  t_req srv_start srv_end t_done        (times in seconds since the epoch)
      ERR t_req t_fail pgcode
  t_req is taken just before the program hands the statement to libpq,
  srv_start/srv_end are the server's statement_timestamp()/clock_timestamp()
  (the shim sends only once it has a slot: srv_start is when the wait ended).
  A connection that fails is reopened (after an ERR line).  Exits 0 at S.

monitor: run WITHOUT the shim.  Every I seconds (default 0.02) until F
  exists, one query counts the backends whose application_name starts with P
  that are busy (state 'active' or 'idle in transaction%'): raw, and strict
  (busy since before the sample's own statement began: all of those were
  busy together at that instant).  Writes "S t raw strict" lines to FILE
  (t: the server's statement_timestamp()).

analyze: reads the storm logs and the monitor's samples and prints one JSON
  object: statements ok/failed (and by SQLSTATE), longest wait that got the
  slot (srv_start - t_req), the failed waits' shortest and longest length,
  how many waits got the slot after timeout + 50 ms, the longest stretch of
  samples with nothing busy while some logged statement was waiting
  (stall_max), the strict and raw peaks and how many samples were above a
  cap given with --cap.

dead-backend: prints BACKEND <pid> of connection A, then (async mode)
  sends `select pg_sleep(60)` on A and prints SENT; the test then ends that
  backend (pg_terminate_backend) and A's poll fails: DIED.  (sync mode: A is
  left idle in a transaction, the test ends its backend, and the next
  statement on A fails: DIED.)  Then, on a new connection B of the same
  thread, in the same mode, `select 1`: prints RESULT {json} (ok, pgcode,
  msg, elapsed), then waits for a line on stdin and exits 0.

lost-holder: thread A opens a transaction (psycopg2's implicit BEGIN) and
  prints HELD <backend pid>, then sits in its own code (no libpq call).
  With --looper, thread C runs `select 1` every 50 ms on its own
  connection until that first line.
  After a line on stdin (the test has ended that backend) thread B runs
  one statement on a new connection: prints RESULT {json} (ok, srv_start:
  the server's statement_timestamp(), t_req, elapsed; or the error).
  After another line A uses its connection: A_AFTER {json}; exits 0.

close-in-xact: connection A creates N temp tables (default 200: the
  server's end of its session takes a while), opens a transaction and is
  closed (PQfinish); connection B, open already, then asks the server
  whether A's backend is still there: prints RESULT {json} (a_pid, a_seen:
  pg_stat_activity's count for it, close_s: PQfinish's time, b_s).

thread-exit: N threads, one after the other, each open a connection, run
  a statement (psycopg2 begins a transaction) and exit without COMMIT (their
  connections stay open, referenced from the main thread): prints ORPHANED
  and their backends' pids.  Then each line on stdin is a command: "xact K"
  runs K more threads at once, each doing BEGIN; pg_sleep(0.3); COMMIT on a
  new connection (prints XACT [json], every thread's outcome), "close"
  closes the orphaned connections (prints CLOSED), EOF exits.

fork: opens a connection, BEGIN, insert into robust_fork (x text); forks a child that tries a
  statement on the inherited connection (reports CHILD_USE {json}), closes
  it, and exits 0; the parent waits for the child, then COMMITs: prints
  PARENT {json} (ok, pgcode, msg) and CHILD <exit status>.
"""
import argparse
import glob
import json
import os
import select
import sys
import threading
import time

import psycopg2
import psycopg2.extensions
import psycopg2.extras

os.environ.setdefault("PGDATESTYLE", "ISO, MDY")   # keep psycopg2 from SETting it


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err_json(e):
    return {"ok": False, "cls": type(e).__name__, "pgcode": getattr(e, "pgcode", None),
            "msg": str(e).strip()}


# ---- storm ------------------------------------------------------------------

STORM_SQL = ("select extract(epoch from statement_timestamp())::float8, pg_sleep(%s), "
             "extract(epoch from clock_timestamp())::float8")


def storm(args):
    log = open(args.log, "a", buffering=1)
    lock = threading.Lock()
    end = time.time() + args.seconds if args.seconds else None

    def write(line):
        with lock:
            log.write(line + "\n")

    def worker():
        conn = None
        while end is None or time.time() < end:
            t_req = time.time()
            try:
                if conn is None:
                    conn = psycopg2.connect("", application_name=args.app)
                    conn.autocommit = True
                cur = conn.cursor()
                t_req = time.time()
                if args.xact:
                    cur.execute("BEGIN")
                cur.execute(STORM_SQL, (args.sleep,))
                s0, _, s1 = cur.fetchone()
                if args.xact:
                    cur.execute("COMMIT")
                write("OK %.6f %.6f %.6f %.6f" % (t_req, s0, s1, time.time()))
            except psycopg2.Error as e:
                write("ERR %.6f %.6f %s" % (t_req, time.time(), e.pgcode or "-"))
                if conn is None:
                    time.sleep(0.05)     # a refused connect: don't spin
                elif conn.closed:
                    conn = None
                elif conn is not None and args.xact:
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        conn = None
            except Exception as e:  # noqa
                sys.stderr.write("storm: %s: %s\n" % (type(e).__name__, e))
                time.sleep(0.05)
                conn = None
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    out("READY %d" % os.getpid())
    for t in threads:
        t.join()


# ---- monitor ----------------------------------------------------------------

MONITOR_SQL = """
SELECT extract(epoch from statement_timestamp())::float8, count(*),
       count(*) FILTER (WHERE xact_start < statement_timestamp()),
       coalesce(string_agg(application_name, ',') FILTER (WHERE xact_start < statement_timestamp()), ''),
       coalesce(extract(epoch from min(xact_start) FILTER (WHERE xact_start < statement_timestamp())), 0)::float8
FROM pg_stat_activity
WHERE application_name LIKE %s
  AND pid <> pg_backend_pid()
  AND (state = 'active' OR state LIKE 'idle in transaction%%')
"""

# On the second server: busy since before the first server's sample began
# (the same host, the same clock): then every backend counted on either was
# busy at that instant.
MONITOR2_SQL = """
SELECT count(*), count(*) FILTER (WHERE xact_start < to_timestamp(%s)),
       coalesce(string_agg(application_name, ',') FILTER (WHERE xact_start < to_timestamp(%s)), ''),
       coalesce(extract(epoch from min(xact_start) FILTER (WHERE xact_start < to_timestamp(%s))), 0)::float8
FROM pg_stat_activity
WHERE application_name LIKE %s
  AND pid <> pg_backend_pid()
  AND (state = 'active' OR state LIKE 'idle in transaction%%')
"""


def monitor(args):
    if os.environ.get("LD_PRELOAD"):
        sys.stderr.write("py_robust monitor: must run without the shim\n")
        sys.exit(2)
    conn = psycopg2.connect("", application_name="pqt_monitor")
    conn.autocommit = True
    cur = conn.cursor()
    cur2 = None
    if args.port2:
        c2 = psycopg2.connect("", port=args.port2, application_name="pqt_monitor")
        c2.autocommit = True
        cur2 = c2.cursor()
    pattern = args.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    f = open(args.out, "w", buffering=1)
    first = True
    while not os.path.exists(args.stop_file):
        t0 = time.monotonic()
        cur.execute(MONITOR_SQL, (pattern,))
        ts, raw, strict, apps, oldest = cur.fetchone()
        if cur2 is not None:
            cur2.execute(MONITOR2_SQL, (ts, ts, ts, pattern))
            raw2, strict2, apps2, oldest2 = cur2.fetchone()
            raw, strict = raw + raw2, strict + strict2
            apps = ",".join(a for a in (apps, apps2) if a)
            oldest = min(o for o in (oldest, oldest2, ts) if o)
        f.write("S %.6f %d %d %.6f\n" % (ts, raw, strict, oldest or ts))
        if args.apps and strict > 1:
            f.write("B %.6f %s\n" % (ts, apps))
        if first:
            out("READY")
            first = False
        left = args.interval - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
    f.close()


# ---- analyze ----------------------------------------------------------------

def analyze(args):
    oks, errs = [], []
    for path in sorted(glob.glob(args.logs)):
        with open(path) as f:
            for line in f:
                w = line.split()
                try:
                    if w and w[0] == "OK" and len(w) == 5:
                        oks.append(tuple(float(x) for x in w[1:]))
                    elif w and w[0] == "ERR" and len(w) == 4:
                        errs.append((float(w[1]), float(w[2]), w[3]))
                except ValueError:
                    pass        # a line cut short by a kill
    samples = []
    with open(args.samples) as f:
        for line in f:
            w = line.split()
            if len(w) in (4, 5) and w[0] == "S":
                samples.append((float(w[1]), int(w[2]), int(w[3]), float(w[4] if len(w) == 5 else w[1])))
    to = args.timeout
    waits = [s0 - tr for tr, s0, s1, td in oks]
    timeouts = [(tf - tr) for tr, tf, code in errs if code == "53300"]
    by_code = {}
    for _, _, code in errs:
        by_code[code] = by_code.get(code, 0) + 1
    # A statement waits from t_req until srv_start (or until it failed).
    pending = [(tr, s0) for tr, s0, s1, td in oks] + [(tr, tf) for tr, tf, c in errs]
    pending.sort()
    # Sweep the samples in time order, keeping the pending intervals that
    # cover each sample.
    stall_max, run_start, run_last = 0.0, None, None
    import heapq
    heap, i = [], 0
    for ts, raw, strict, _ in samples:
        while i < len(pending) and pending[i][0] <= ts:
            heapq.heappush(heap, pending[i][1])
            i += 1
        while heap and heap[0] < ts:
            heapq.heappop(heap)
        waiting = bool(heap)
        if raw == 0 and waiting:
            if run_start is None:
                run_start = ts
            run_last = ts
            stall_max = max(stall_max, run_last - run_start)
        else:
            run_start = None
    res = {
        "ok": len(oks), "failed": len(errs), "failed_by_sqlstate": by_code,
        "wait_ok_max": round(max(waits), 3) if waits else 0,
        "wait_ok_over_timeout": sum(1 for x in waits if x > to + 0.05),
        "timeouts": len(timeouts),
        "timeout_wait_min": round(min(timeouts), 3) if timeouts else None,
        "timeout_wait_max": round(max(timeouts), 3) if timeouts else None,
        "stall_max": round(stall_max, 3),
        "samples": len(samples),
        "peak_strict": max((s[2] for s in samples), default=0),
        "peak_raw": max((s[1] for s in samples), default=0),
    }
    if args.cap:
        res["samples_over_cap"] = sum(1 for s in samples if s[2] > args.cap)
    if args.max_log or args.cap_trace:
        res.update(over_cap_in_force(args, samples))
    print(json.dumps(res))


def over_cap_in_force(args, samples):
    """Samples above the highest cap in force over the busy interval of the
    backends they count: from the oldest one's transaction start (less
    --slack: a slot is granted before its statement reaches the server) to
    the sample.  A lowered cap lets work already admitted finish, so that
    interval's highest cap is the one the sample must keep.  The caps come
    from --cap-trace (C <time> <old> <new> ... lines: every change the
    shim made, exact) or --max-log (M <time> <max> lines, pqshim stat
    every 100 ms: the look before the interval and the one after it are
    taken too, as the cap may have changed between looks).  A sample is
    blamed on a kill when one of its busy clients had been killed already
    (its statement was in its socket)."""
    import bisect
    source, exact = [], False
    if args.cap_trace:
        exact = True
        with open(args.cap_trace) as f:
            for line in f:
                w = line.split()
                if len(w) >= 4 and w[0] == "C":
                    source.append((float(w[1]), int(w[3])))
        source.sort()
    elif args.max_log:
        with open(args.max_log) as f:
            for line in f:
                w = line.split()
                if len(w) == 3 and w[0] == "M":
                    source.append((float(w[1]), int(w[2])))
    times = [t for t, _ in source]
    kills = {}
    if args.kills:
        with open(args.kills) as f:
            for line in f:
                w = line.split()
                if len(w) == 3 and w[0] == "K":
                    kills[w[2]] = float(w[1])
    busy = {}
    with open(args.samples) as f:
        for line in f:
            w = line.split()
            if len(w) == 3 and w[0] == "B":
                busy[w[1]] = w[2].split(",")
    over, blamed, excess_max, highest, uncapped, lag_max = 0, 0, 0, 0, 0, 0.0
    over_list = []
    for ts, raw, strict, oldest in samples:
        start = min(oldest, ts) - args.slack
        lo, hi = bisect.bisect_right(times, start), bisect.bisect_right(times, ts)
        caps = [c for _, c in source[lo:hi]]
        if lo > 0:
            caps.append(source[lo - 1][1])     # in force when the interval began
        if not exact and hi < len(source):
            caps.append(source[hi][1])         # maybe set before ts, seen after
        if not caps:
            continue
        if 0 in caps:
            uncapped += 1        # the segment said: no cap
            continue
        cap = max(caps)
        highest = max(highest, cap)
        lag_max = max(lag_max, ts - oldest)
        if strict > cap:
            over += 1
            excess_max = max(excess_max, strict - cap)
            apps = busy.get("%.6f" % ts, [])
            killed = any(a in kills and kills[a] < ts for a in apps)
            blamed += killed
            over_list.append({"t": ts, "busy": strict, "cap": cap, "since": round(ts - oldest, 3),
                              "killed": killed, "apps": apps})
    return {"highest_cap_in_force": highest, "samples_over_cap_in_force": over,
            "over_cap_blamed_on_kills": blamed, "over_cap_excess_max": excess_max,
            "samples_uncapped": uncapped, "busy_interval_max": round(lag_max, 3),
            "over_cap": over_list[:50]}


# ---- dead backend -----------------------------------------------------------

def dead_backend(args):
    asy = args.mode == "async"

    def connect():
        c = psycopg2.connect("", application_name=args.app, async_=asy)
        if asy:
            psycopg2.extras.wait_select(c)
        else:
            c.autocommit = True
        return c

    def run(c, sql):
        cur = c.cursor()
        cur.execute(sql)
        if asy:
            psycopg2.extras.wait_select(c)
        return cur.fetchall() if cur.description else None

    a = connect()
    out("BACKEND %d" % run(a, "select pg_backend_pid()")[0][0])
    if asy:
        a.cursor().execute("select pg_sleep(60)")
        out("SENT")
        try:
            psycopg2.extras.wait_select(a)
            out("DIED no")
        except psycopg2.Error as e:
            out("DIED " + json.dumps(err_json(e)))
    else:
        run(a, "begin")
        run(a, "select 1")
        out("SENT")
        sys.stdin.readline()          # the test has ended A's backend
        try:
            run(a, "select 2")
            out("DIED no")
        except psycopg2.Error as e:
            out("DIED " + json.dumps(err_json(e)))
    t0 = time.monotonic()
    try:
        b = connect()
        rows = run(b, "select 1")
        r = {"ok": True, "rows": rows}
    except psycopg2.Error as e:
        r = err_json(e)
    r["elapsed"] = time.monotonic() - t0
    out("RESULT " + json.dumps(r))
    sys.stdin.readline()
    del a


# ---- another thread's lost connection ----------------------------------------

def lost_holder(args):
    """Thread A opens a transaction (its slot held) and sits in its own
    code; the test ends A's backend; then thread B runs a statement."""
    wake, box = threading.Event(), {}

    def holder():
        a = psycopg2.connect("", application_name=args.app + "_a")
        cur = a.cursor()
        cur.execute("select pg_backend_pid()")     # psycopg2 begins a transaction
        out("HELD %d" % cur.fetchone()[0])
        wake.wait(60)                              # no libpq call meanwhile
        try:
            cur.execute("select 1")
            box["a"] = {"ok": True}
        except psycopg2.Error as e:
            box["a"] = err_json(e)
        a.close()

    ta = threading.Thread(target=holder)
    ta.start()
    stop = threading.Event()

    def looper():                                  # statements of its own, now and then
        c = psycopg2.connect("", application_name=args.app + "_c")
        c.autocommit = True
        while not stop.wait(0.05):
            c.cursor().execute("select 1")
        c.close()
    tc = threading.Thread(target=looper)
    if args.looper:
        tc.start()
    sys.stdin.readline()                           # A's backend is gone
    stop.set()
    if args.looper:
        tc.join()
    r = {}

    def runner():
        t0 = time.time()
        try:
            b = psycopg2.connect("", application_name=args.app + "_b")
            b.autocommit = True
            cur = b.cursor()
            cur.execute("select extract(epoch from statement_timestamp())::float8")
            r.update(ok=True, srv_start=cur.fetchone()[0])
            b.close()
        except psycopg2.Error as e:
            r.update(err_json(e))
        r.update(t_req=t0, elapsed=time.time() - t0)

    tb = threading.Thread(target=runner)
    tb.start()
    tb.join()
    out("RESULT " + json.dumps(r))
    sys.stdin.readline()
    wake.set()
    ta.join()
    out("A_AFTER " + json.dumps(box.get("a")))


# ---- a connection closed inside a transaction --------------------------------

def close_in_xact(args):
    """A makes its session's end slow (temp tables to drop), opens a
    transaction and is closed; B, open already, asks the server at once
    whether A's backend is still there."""
    a = psycopg2.connect("", application_name=args.app + "_a")
    b = psycopg2.connect("", application_name=args.app + "_b")
    b.autocommit = True
    cur = a.cursor()
    cur.execute("DO $$ BEGIN FOR i IN 1..%d LOOP EXECUTE format('CREATE TEMP TABLE t%%s (x int)', i);"
                " END LOOP; END $$" % args.tables)
    a.commit()
    cur.execute("select pg_backend_pid()")         # psycopg2 begins a transaction
    pid = cur.fetchone()[0]
    t0 = time.monotonic()
    a.close()
    closed = time.monotonic() - t0
    bc = b.cursor()
    bc.execute("select count(*) from pg_stat_activity where pid = %s", (pid,))
    out("RESULT " + json.dumps({"a_pid": pid, "a_seen": bc.fetchone()[0], "close_s": closed,
                                "b_s": time.monotonic() - t0}))
    b.close()


# ---- threads exiting mid-transaction -----------------------------------------

def thread_exit(args):
    kept, pids = [], []
    lock = threading.Lock()

    def orphan():
        c = psycopg2.connect("", application_name="%s_orphan" % args.app)
        cur = c.cursor()
        cur.execute("select pg_backend_pid()")   # psycopg2 began a transaction
        with lock:
            kept.append(c)
            pids.append(cur.fetchone()[0])

    for _ in range(args.orphans):        # one after the other: each exits holding
        t = threading.Thread(target=orphan)
        t.start()
        t.join()
    out("ORPHANED " + " ".join(str(p) for p in pids))
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "xact":
            results = []

            def xact():
                t0 = time.monotonic()
                try:
                    c = psycopg2.connect("", application_name="%s_new" % args.app)
                    cur = c.cursor()
                    cur.execute("select pg_sleep(0.3)")
                    c.commit()
                    c.close()
                    r = {"ok": True}
                except psycopg2.Error as e:
                    r = err_json(e)
                r["elapsed"] = time.monotonic() - t0
                with lock:
                    results.append(r)
            ths = [threading.Thread(target=xact) for _ in range(int(w[1]))]
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            out("XACT " + json.dumps(results))
        elif w[0] == "close":
            for c in kept:
                c.close()
            kept = []
            out("CLOSED")


# ---- fork -------------------------------------------------------------------

def fork(args):
    c = psycopg2.connect("", application_name=args.app)
    cur = c.cursor()
    cur.execute("insert into robust_fork values (%s)", (args.app,))   # a transaction begins
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            c.cursor().execute("select 1")
            res = {"ok": True}
        except BaseException as e:  # noqa
            res = err_json(e)
        try:
            c.close()
            res["closed"] = True
        except BaseException as e:  # noqa
            res["closed"] = str(e)
        os.write(w, ("CHILD_USE " + json.dumps(res) + "\n").encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(data.decode())
    try:
        cur.execute("select 1")
        c.commit()
        res = {"ok": True}
    except psycopg2.Error as e:
        res = err_json(e)
    out("PARENT " + json.dumps(res))
    out("CHILD %d" % os.waitstatus_to_exitcode(status))
    c.close()


# ---- soak: threads exiting mid-transaction, forks holding slots -------------

def orphans(args):
    """Loop: a thread opens a connection, runs a statement (psycopg2 opens a
    transaction) and exits; a moment later the main thread closes that
    connection.  Logged like storm (the statement's wait)."""
    log = open(args.log, "a", buffering=1)
    out("READY %d" % os.getpid())
    while True:
        box = {}

        def one():
            t_req = time.time()
            try:
                c = psycopg2.connect("", application_name=args.app)
                box["c"] = c
                cur = c.cursor()
                t_req = time.time()
                cur.execute(STORM_SQL, (args.sleep,))
                s0, _, s1 = cur.fetchone()
                log.write("OK %.6f %.6f %.6f %.6f\n" % (t_req, s0, s1, time.time()))
            except psycopg2.Error as e:
                log.write("ERR %.6f %.6f %s\n" % (t_req, time.time(), e.pgcode or "-"))
                if "c" not in box:
                    time.sleep(0.05)     # a refused connect: don't spin
        th = threading.Thread(target=one)
        th.start()
        th.join()
        time.sleep(args.hold)
        c = box.get("c")
        if c is not None:
            c.close()


def forker(args):
    """Loop: BEGIN and a statement (the slot is held), fork a child that
    holds the inherited connection a moment (and closes it, or not) and
    exits; the parent COMMITs once the child is gone."""
    log = open(args.log, "a", buffering=1)
    out("READY %d" % os.getpid())
    c = None
    n = 0
    while True:
        t_req = time.time()
        try:
            if c is None:
                c = psycopg2.connect("", application_name=args.app)
            cur = c.cursor()
            t_req = time.time()
            cur.execute(STORM_SQL, (args.sleep,))
            s0, _, s1 = cur.fetchone()
            n += 1
            pid = os.fork()
            if pid == 0:
                time.sleep(args.hold)
                if n % 2:
                    try:
                        c.close()
                    except BaseException:  # noqa
                        pass
                os._exit(0)
            os.waitpid(pid, 0)
            c.commit()
            log.write("OK %.6f %.6f %.6f %.6f\n" % (t_req, s0, s1, time.time()))
        except psycopg2.Error as e:
            log.write("ERR %.6f %.6f %s\n" % (t_req, time.time(), e.pgcode or "-"))
            if c is None:
                time.sleep(0.05)         # a refused connect: don't spin
                continue
            try:
                c.rollback()
            except BaseException:  # noqa
                c = None
            if c is not None and c.closed:
                c = None


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("storm")
    p.add_argument("--app", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.01)
    p.add_argument("--xact", action="store_true")
    p.add_argument("--seconds", type=float, default=0)
    p = sub.add_parser("monitor")
    p.add_argument("--prefix", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--port2", help="also count this server's backends (the replica)")
    p.add_argument("--apps", action="store_true", help="log who was busy (B lines)")
    p = sub.add_parser("analyze")
    p.add_argument("--logs", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--cap", type=int, default=0)
    p.add_argument("--kills", help="K <time> <app> lines: clients killed")
    p.add_argument("--max-log", help="M <time> <max_active> lines: the cap the segment showed")
    p.add_argument("--cap-trace", help="C <time> <old> <new> lines: every cap change, exact")
    p.add_argument("--slack", type=float, default=0.1,
                   help="seconds before a transaction's start its slot may have been granted")
    p = sub.add_parser("dead-backend")
    p.add_argument("--app", required=True)
    p.add_argument("--mode", choices=("async", "sync"), required=True)
    p = sub.add_parser("lost-holder")
    p.add_argument("--app", required=True)
    p.add_argument("--looper", action="store_true")
    p = sub.add_parser("close-in-xact")
    p.add_argument("--app", required=True)
    p.add_argument("--tables", type=int, default=200)
    p = sub.add_parser("thread-exit")
    p.add_argument("--app", required=True)
    p.add_argument("--orphans", type=int, default=4)
    p = sub.add_parser("fork")
    p.add_argument("--app", required=True)
    for name in ("orphans", "forker"):
        p = sub.add_parser(name)
        p.add_argument("--app", required=True)
        p.add_argument("--log", required=True)
        p.add_argument("--sleep", type=float, default=0.01)
        p.add_argument("--hold", type=float, default=0.1)
    a = ap.parse_args()
    {"storm": storm, "monitor": monitor, "analyze": analyze, "dead-backend": dead_backend,
     "lost-holder": lost_holder, "close-in-xact": close_in_xact,
     "thread-exit": thread_exit, "fork": fork, "orphans": orphans, "forker": forker}[a.cmd](a)


if __name__ == "__main__":
    main()
