#!/usr/bin/python3
"""tools/demo_app.py - the demo's multi-threaded service: THREADS threads,
each with its own psycopg2 connection, run short read/write transactions for
SECONDS seconds, and one pair of threads shares a connection (the misuse
that pqshim's cross-thread tracking shows)."""
import sys, threading, time
import psycopg2

threads, seconds = int(sys.argv[1]), float(sys.argv[2])
deadline = time.time() + seconds
done = [0] * threads


def worker(i):
    conn = psycopg2.connect(application_name="demo_app")
    cur = conn.cursor()
    while time.time() < deadline:
        cur.execute("select abalance from pgbench_accounts where aid = %s", (i * 1000 + done[i] % 1000 + 1,))
        cur.execute("update pgbench_tellers set tbalance = tbalance + 1 where tid = %s", (i % 10 + 1,))
        conn.commit()
        done[i] += 1
        time.sleep(0.002)
    conn.close()


shared = psycopg2.connect(application_name="demo_app")
lock = threading.Lock()


def sharer():
    while time.time() < deadline:
        with lock, shared.cursor() as cur:
            cur.execute("select 1")
        time.sleep(0.05)


pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
pool += [threading.Thread(target=sharer) for _ in range(2)]
for t in pool:
    t.start()
for t in pool:
    t.join()
shared.close()
print("demo_app: %d transactions in %d threads" % (sum(done), threads))
