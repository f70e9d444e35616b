#!/usr/bin/python3
"""tools/demo_app.py - the demo's multi-threaded service: THREADS threads,
each with its own psycopg2 connection, run short read/write transactions for
SECONDS seconds; two more threads share one connection (the misuse that
pqshim's cross-thread tracking shows); REPORTS more threads (default 0) run
longer read-only report transactions as application_name demo_report (the
demo's policy gives them a lane of one slot).  Writes refused because the database
is read-only (SQLSTATE 25006) are counted, not fatal.  Every transaction
that runs on the primary writes the server's clock at its start and at its
end into demo_xact, before it commits (tools/demo.sh computes the peak from
those rows).  Prints one JSON line of counters at the end."""
import json, sys, threading, time
import psycopg2, psycopg2.errors

threads, seconds = int(sys.argv[1]), float(sys.argv[2])
reports = int(sys.argv[3]) if len(sys.argv) > 3 else 0
deadline = time.time() + seconds
lock = threading.Lock()
stats = dict(transactions=0, reads=0, writes_ok=0, writes_refused=0, errors=0, last_error="")

# The start stays on the server, in a setting that ends with the transaction.
BEGIN = "select pg_is_in_recovery(), set_config('demo.t0', clock_timestamp()::text, true)"
END = ("insert into demo_xact values "
       "(%s, current_setting('demo.t0')::timestamptz, clock_timestamp())")


def count(key, err=None):
    with lock:
        stats[key] += 1
        if err is not None:
            stats["last_error"] = str(err).strip()[:200]


def transaction(conn, cur, who, work):
    """One transaction: note the start, do `work`, write both clocks, commit."""
    try:
        cur.execute(BEGIN)
        in_recovery = cur.fetchone()[0]
        work(cur)
        if not in_recovery:
            cur.execute(END, (who,))
        conn.commit()
        count("transactions")
    except psycopg2.errors.ReadOnlySqlTransaction:
        conn.rollback()
        count("writes_refused")
    except psycopg2.Error as e:
        conn.rollback()
        count("errors", e)


def worker(i):
    conn = psycopg2.connect(application_name="demo_app")
    cur = conn.cursor()
    n = 0

    def work(cur):
        cur.execute("select abalance from pgbench_accounts where aid = %s", (i * 1000 + n % 1000 + 1,))
        cur.fetchone()
        count("reads")
        cur.execute("select pg_sleep(0.01)")
        if n % 4 == 0:
            cur.execute("insert into pgbench_history (tid, bid, aid, delta, mtime) "
                        "values (1, 1, %s, 1, now())", (i + 1,))
            count("writes_ok")

    while time.time() < deadline:
        transaction(conn, cur, "demo_app", work)
        n += 1
        time.sleep(0.005)
    conn.close()


shared = psycopg2.connect(application_name="demo_app")
shared_lock = threading.Lock()


def sharer():
    while time.time() < deadline:
        with shared_lock, shared.cursor() as cur:
            transaction(shared, cur, "demo_app shared", lambda c: c.execute("select 1"))
        time.sleep(0.05)


def reporter(i):
    conn = psycopg2.connect(application_name="demo_report")
    cur = conn.cursor()
    n = 0

    def work(cur):
        lo = (i * 7919 + n * 20011) % 180000 + 1
        cur.execute("select count(*), sum(abalance) from pgbench_accounts "
                    "where aid between %s and %s", (lo, lo + 20000))
        cur.fetchone()
        count("reads")
        cur.execute("select pg_sleep(0.02)")

    while time.time() < deadline:
        transaction(conn, cur, "demo_report", work)
        n += 1
        time.sleep(0.005)
    conn.close()


pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
pool += [threading.Thread(target=sharer) for _ in range(2)]
pool += [threading.Thread(target=reporter, args=(i,)) for i in range(reports)]
for t in pool:
    t.start()
for t in pool:
    t.join()
shared.close()
print(json.dumps(stats))
