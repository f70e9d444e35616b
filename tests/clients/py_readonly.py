#!/usr/bin/python3
"""tests/clients/py_readonly.py - a threaded psycopg2 service for the
read-only switch: it never stops reading and writing while the policy sends
it to the replica and back.

Connections (application_name given with --app):
  reader    one thread, its own connection: `select pg_is_in_recovery()`
            in a loop (autocommit): each answer says where the read went
  writer    one thread: insert into ro_t in a loop (autocommit)
  txn       one thread: BEGIN; select; select; COMMIT in a loop (explicit
            transactions, psycopg2's default mode)
  shared    two threads share one connection under a lock (reads)
  idle      one connection used once at start, then left alone until the
            very end, when it reads once more (its backend may have been
            ended by the switch meanwhile: the read must still succeed)
Every second (and at the end) it prints one line of JSON with counters since
the start: reads on primary/replica, read errors, writes ok, writes refused
with 25006, other errors, and the last error text.  Runs until stdin closes.
"""
import json, sys, threading, time
import psycopg2, psycopg2.errors

app = sys.argv[sys.argv.index("--app") + 1] if "--app" in sys.argv else "py_readonly"
stats = dict(read_primary=0, read_replica=0, read_errors=0, writes_ok=0,
             writes_refused=0, other_errors=0, txns=0, last_error="")
lock = threading.Lock()
stop = threading.Event()


def bump(key, err=None):
    with lock:
        stats[key] += 1
        if err is not None:
            stats["last_error"] = str(err).strip()[:300]


def connect(autocommit=True):
    c = psycopg2.connect(application_name=app)
    c.autocommit = autocommit
    return c


def read(cur):
    cur.execute("select pg_is_in_recovery()")
    bump("read_replica" if cur.fetchone()[0] else "read_primary")


def reader():
    c = connect()
    while not stop.is_set():
        try:
            read(c.cursor())
        except Exception as e:
            bump("read_errors", e)
        time.sleep(0.01)
    c.close()


def writer():
    c = connect()
    while not stop.is_set():
        try:
            c.cursor().execute("insert into ro_t values (now())")
            bump("writes_ok")
        except psycopg2.errors.ReadOnlySqlTransaction:
            bump("writes_refused")
        except Exception as e:
            bump("other_errors", e)
        time.sleep(0.02)
    c.close()


def txn():
    c = connect(autocommit=False)
    while not stop.is_set():
        try:
            cur = c.cursor()
            read(cur)
            cur.execute("select count(*) from ro_t")
            c.commit()
            bump("txns")
        except Exception as e:
            bump("read_errors", e)
            try:
                c.rollback()
            except Exception:
                pass
        time.sleep(0.03)
    c.close()


shared = connect()
shared_lock = threading.Lock()


def sharer():
    while not stop.is_set():
        try:
            with shared_lock:
                read(shared.cursor())
        except Exception as e:
            bump("read_errors", e)
        time.sleep(0.02)


idle = connect()
idle.cursor().execute("select 1")          # used once, then left alone

threads = [threading.Thread(target=f) for f in (reader, writer, txn, sharer, sharer)]
for t in threads:
    t.start()


def report():
    with lock:
        print(json.dumps(stats), flush=True)


def ticker():
    while not stop.wait(0.25):
        report()


threading.Thread(target=ticker, daemon=True).start()
print("READY", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join()
try:
    read(idle.cursor())
except Exception as e:
    bump("read_errors", e)
shared.close()
idle.close()
report()
