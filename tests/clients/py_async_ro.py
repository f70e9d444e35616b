#!/usr/bin/python3
"""tests/clients/py_async_ro.py - an asynchronous psycopg2 program for the
read-only switch: every connection is made with psycopg2.connect(async_=1)
(PQconnectStart + PQconnectPoll) and every statement is sent without
waiting (PQsendQuery) and finished by a poll loop on the socket with
select(), the way an event loop drives libpq.  Single-threaded.

Connections (application_name given with --app):
  reader    `select pg_is_in_recovery()` in a loop: where the read went
  writer    insert into ro_t in a loop (writes are refused with 25006 on
            the replica)
  fresh     every ~0.3 s a new asynchronous connection: one read, then
            closed (a connect made while read-only is on must go to the
            replica); its application_name is APP-fresh, so that the
            server's count for APP is the reader and the writer only
Every 0.25 s (and at the end) it prints one line of JSON with counters
since the start: reads on primary/replica (reader), fresh connections on
primary/replica, read errors, writes ok, writes refused with 25006, other
errors, the last error text.  Runs until stdin closes.
"""
import json, os, select, sys, time
import psycopg2, psycopg2.errors, psycopg2.extensions as ext
import pqpoll

app = sys.argv[sys.argv.index("--app") + 1] if "--app" in sys.argv else "py_async_ro"
stats = dict(read_primary=0, read_replica=0, fresh_primary=0, fresh_replica=0,
             read_errors=0, writes_ok=0, writes_refused=0, other_errors=0,
             last_error="")
TIMEOUT = 10.0          # no single step may take longer: a hang is an error


def bump(key, err=None):
    stats[key] += 1
    if err is not None:
        stats["last_error"] = ("%s: %s" % (type(err).__name__, err)).strip()[:300]


def wait(conn):
    """Drive conn.poll() until the connect or statement is done."""
    pqpoll.wait(conn, TIMEOUT)


def connect(name=app):
    c = psycopg2.connect(application_name=name, async_=1)
    wait(c)
    return c


def read(conn):
    """True when the read was answered by a server in recovery."""
    cur = conn.cursor()
    cur.execute("select pg_is_in_recovery()")
    wait(conn)
    return cur.fetchone()[0]


def write(conn):
    cur = conn.cursor()
    cur.execute("insert into ro_t values (now())")
    wait(conn)


def report():
    print(json.dumps(stats), flush=True)


reader = connect()
writer = connect()
read(reader)
print("READY", flush=True)

last_report = last_fresh = time.monotonic()
stdin = sys.stdin.fileno()
while True:
    try:
        bump("read_replica" if read(reader) else "read_primary")
    except Exception as e:
        bump("read_errors", e)
    try:
        write(writer)
        bump("writes_ok")
    except psycopg2.errors.ReadOnlySqlTransaction:
        bump("writes_refused")
    except Exception as e:
        bump("other_errors", e)
    now = time.monotonic()
    if now - last_fresh >= 0.3:
        last_fresh = now
        try:
            c = connect(app + "-fresh")
            try:
                bump("fresh_replica" if read(c) else "fresh_primary")
            finally:
                c.close()
        except Exception as e:
            bump("read_errors", e)
    if now - last_report >= 0.25:
        last_report = now
        report()
    # the pause between rounds doubles as the watch on stdin
    r, _, _ = select.select([stdin], [], [], 0.02)
    if r and not os.read(stdin, 4096):
        break

reader.close()
writer.close()
report()
