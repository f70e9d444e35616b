#!/usr/bin/python3
"""tests/bench/bench.py - the parts of `make bench` (tests/bench/run.sh) that
need a program: a server-side sampler, the read-only switch and the policy
reload measurements.  Runs with the system's python3 and psycopg2, never
under the shim itself (run.sh starts it with LD_PRELOAD unset); the clients
it measures are started under the shim explicitly.  The servers are reached
over the test bed's Unix socket ($PQT_SOCKDIR), as user postgres.

  bench.py sample PORT [READY]      sample pg_stat_activity on PORT every
                                    20 ms (creating the file READY once
                                    connected) until SIGTERM, then print
                                    "peak samples mean_interval_ms": the peak
                                    number of client backends not idle
  bench.py switch POLICY FLAG LIB ROUNDS PQSHIM
                                    50 connections (5 processes x 10 threads)
                                    under POLICY; the flag file appears and
                                    goes ROUNDS times; one line per round:
                                    "first_on empty_on first_off empty_off" (s)
                                    then "errors N migrations M redirects R"
  bench.py worker THREADS OUTFILE   one switch client process (internal)
  bench.py reload POLICY PQSHIM LIB SCRIPT ROUNDS
                                    3 pgbench processes x 4 clients under a
                                    cap of 3; max_active 3 -> 1 -> 3 ROUNDS
                                    times; one line per change:
                                    "down|up stat_s server_s"
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
TICK = 0.02          # the samplers' period


def connect(port, app="bench-sampler", dbname="postgres"):
    c = psycopg2.connect(host=os.environ["PQT_SOCKDIR"], port=port, user="postgres",
                         dbname=dbname, application_name=app)
    c.autocommit = True
    return c


BUSY = ("select count(*) from pg_stat_activity where backend_type = 'client backend'"
        " and pid <> pg_backend_pid() and state <> 'idle'")


def every(period):
    """Yield, then sleep until the next multiple of period (no drift)."""
    nxt = time.monotonic()
    while True:
        yield
        nxt += period
        time.sleep(max(0.0, nxt - time.monotonic()))


# ---- sample -----------------------------------------------------------------

def cmd_sample(port, ready=None):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cur = connect(int(port)).cursor()
    if ready:
        open(ready, "w").close()
    peak = n = 0
    t0 = time.monotonic()
    for _ in every(TICK):
        if stop.is_set():
            break
        cur.execute(BUSY)
        peak = max(peak, cur.fetchone()[0])
        n += 1
    span = time.monotonic() - t0
    print(peak, n, "%.1f" % (1000 * span / max(n, 1)))


# ---- switch -----------------------------------------------------------------

def cmd_worker(nthreads, outpath):
    """nthreads threads, each with its own connection (application_name
    bench-switch), each sending `select pg_is_in_recovery()` every 10 ms and
    writing "time thread t|f" to outpath whenever the answer changes."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    lock = threading.Lock()
    out = open(outpath, "a", buffering=1)

    def note(i, what):
        with lock:
            out.write("%.6f %d %s\n" % (time.time(), i, what))

    def run(i):
        conn, last = None, None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(application_name="bench-switch")
                    conn.autocommit = True
                cur = conn.cursor()
                cur.execute("select pg_is_in_recovery()")
                v = "t" if cur.fetchone()[0] else "f"
                if v != last:
                    note(i, v)
                    last = v
            except psycopg2.Error as e:
                note(i, "error " + str(e).strip().replace("\n", " "))
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(int(nthreads))]
    for t in threads:
        t.start()
    while not stop.is_set():
        time.sleep(0.05)
    for t in threads:
        t.join()


def read_events(paths):
    ev = []
    for p in paths:
        try:
            with open(p) as f:
                for line in f:
                    parts = line.split(None, 2)
                    if len(parts) == 3:
                        ev.append((float(parts[0]), parts[2].strip()))
        except FileNotFoundError:
            pass
    return ev


def cmd_switch(policy, flag, lib, rounds, pqshim):
    nproc, nthreads = 5, 10
    total = nproc * nthreads
    primary, replica = int(os.environ["PQT_PRIMARY_PORT"]), int(os.environ["PQT_REPLICA_PORT"])
    pc, rc = connect(primary).cursor(), connect(replica).cursor()
    q = ("select count(*) from pg_stat_activity where application_name = 'bench-switch'"
         " and backend_type = 'client backend'")

    def counts():
        pc.execute(q)
        rc.execute(q)
        return pc.fetchone()[0], rc.fetchone()[0]

    wdir = os.path.dirname(os.path.abspath(flag))
    outs = [os.path.join(wdir, "switch-%d.out" % i) for i in range(nproc)]
    env = dict(os.environ, LD_PRELOAD=lib, PQSHIM_POLICY=policy)
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", str(nthreads), o],
                              env=env) for o in outs]
    try:
        deadline = time.monotonic() + 30
        while counts() != (total, 0) or len(read_events(outs)) < total:
            if time.monotonic() > deadline:
                raise SystemExit("switch: the %d clients did not all connect to the primary" % total)
            time.sleep(0.05)

        def flip(on):
            """Make the flag appear (on) or go; return (first answer from the
            new side, the old side empty of the clients), seconds after."""
            time.sleep(random.uniform(0.4, 0.9))     # a random phase against the shim's tick
            t0 = time.time()
            if on:
                open(flag, "w").close()
            else:
                os.unlink(flag)
            empty = None
            for _ in every(TICK):
                p, r = counts()
                old, new = (p, r) if on else (r, p)
                if empty is None and old == 0:
                    empty = time.time() - t0
                if empty is not None and new == total:
                    break
                if time.time() - t0 > 15:
                    break
            want = "t" if on else "f"
            firsts = [t for t, what in read_events(outs) if what == want and t >= t0]
            first = min(firsts) - t0 if firsts else None
            return first, empty

        def fmt(v):
            return "%.3f" % v if v is not None else "never"

        for _ in range(int(rounds)):
            a, b = flip(True)
            c, d = flip(False)
            print(fmt(a), fmt(b), fmt(c), fmt(d), flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        if os.path.exists(flag):
            os.unlink(flag)
    errors = sum(1 for _, what in read_events(outs) if what.startswith("error"))
    st = json.loads(subprocess.run([pqshim, "stat", "-p", policy, "--json"], check=True,
                                   capture_output=True, text=True).stdout)
    print("errors %d migrations %d redirects %d" % (errors, st["totals"]["migrations"],
                                                   st["totals"]["redirects"]))


# ---- reload -----------------------------------------------------------------

def cmd_reload(policy, pqshim, lib, script, rounds):
    rounds = int(rounds)
    base = open(policy).read()

    def write_cap(n):
        tmp = policy + ".new"
        with open(tmp, "w") as f:
            f.write(base.replace("max_active = 3", "max_active = %d" % n))
        os.chmod(tmp, 0o600)
        os.replace(tmp, policy)          # as an editor or a deploy tool does: atomically

    def stat_max():
        r = subprocess.run([pqshim, "stat", "-p", policy, "--json"], capture_output=True, text=True)
        return json.loads(r.stdout)["cap"]["max_active"]

    secs = int(3 + rounds * 2.6) + 1
    env = dict(os.environ, LD_PRELOAD=lib, PQSHIM_POLICY=policy)
    procs = [subprocess.Popen([PGBENCH, "-n", "-c", "4", "-j", "4", "-T", str(secs), "-f", script],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(3)]
    samples = []                          # (time, busy backends on the primary)
    stop = threading.Event()

    def sampler():
        cur = connect(int(os.environ["PQT_PRIMARY_PORT"])).cursor()
        for _ in every(TICK):
            if stop.is_set():
                return
            cur.execute(BUSY)
            samples.append((time.time(), cur.fetchone()[0]))

    th = threading.Thread(target=sampler)
    th.start()
    try:
        time.sleep(1.5)                   # every client connected, the cap full
        before = max((n for t, n in samples if t > time.time() - 0.5), default=0)
        print("before %d" % before, flush=True)
        for _ in range(rounds):
            for n, dur in ((1, 1.3), (3, 1.0)):
                time.sleep(random.uniform(0.1, 0.4))
                t0 = time.time()
                write_cap(n)
                t_stat = None
                while time.time() - t0 < dur:
                    if t_stat is None and stat_max() == n:
                        t_stat = time.time() - t0
                    time.sleep(0.01)
                after = [(t, k) for t, k in samples if t >= t0]
                if n == 1:
                    # the last sample that saw more than one busy backend
                    over = [t for t, k in after if k > 1]
                    server = (max(over) - t0 + TICK) if over else 0.0
                    peak_tail = max((k for t, k in after if t > t0 + 0.7), default=-1)
                    word = "down"
                else:
                    up = [t for t, k in after if k > 1]
                    server = (min(up) - t0) if up else None
                    peak_tail = max((k for t, k in after), default=-1)
                    word = "up"
                print(word, "%.3f" % t_stat if t_stat is not None else "never",
                      "%.3f" % server if server is not None else "never", peak_tail, flush=True)
    finally:
        stop.set()
        th.join()
        for p in procs:
            p.wait()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"sample": cmd_sample, "worker": cmd_worker, "switch": cmd_switch,
     "reload": cmd_reload}[cmd](*args)


if __name__ == "__main__":
    main()
