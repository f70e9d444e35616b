#!/usr/bin/python3
"""Daemon-like psycopg2 programs that close descriptors they did not open
and get the same numbers for files of their own
(tests/integration/t_out_closefds.sh).  Connection parameters come from the
PG* environment.

    py_closefds.py log LOGFILE DATAFILE
        connects, closes the shim's log descriptor (found in /proc/self/fd)
        as a daemon's close_range does, opens DATAFILE (the lowest free
        number: the same), writes to it; prints "REUSED n" when it got that
        number.
    py_closefds.py stderr OUTFILE
        closes 0, 1 and 2, takes 0 and 1 with /dev/null and connects: the
        connection's socket is descriptor 2; writes "SOCKET n" and the
        result of its last statement to OUTFILE.

Then each uses its connection from another thread (cross_thread = warn:
the shim logs it) and runs one more statement.
"""
import os
import sys
import threading

import psycopg2


def other_thread(conn):
    t = threading.Thread(target=lambda: conn.cursor().execute("select 2"))
    t.start()
    t.join()


def log_mode(logfile, datafile):
    conn = psycopg2.connect(application_name="t_out_closefds")
    conn.autocommit = True
    conn.cursor().execute("select 1")
    theirs = [int(fd) for fd in os.listdir("/proc/self/fd")
              if os.path.realpath("/proc/self/fd/" + fd) == os.path.realpath(logfile)]
    if not theirs:
        sys.exit("the shim's log is not open")
    for fd in theirs:
        os.close(fd)
    fd = os.open(datafile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    print("REUSED %d" % fd if fd in theirs else "OTHER %d" % fd, flush=True)
    os.write(fd, b"the program's own data\n")
    other_thread(conn)
    os.write(fd, b"more of it\n")


def stderr_mode(outfile):
    out = open(outfile, "w", buffering=1)
    for fd in (0, 1, 2):
        os.close(fd)
    os.open("/dev/null", os.O_RDONLY)
    os.open("/dev/null", os.O_RDONLY)
    conn = psycopg2.connect(application_name="t_out_closefds")
    conn.autocommit = True
    out.write("SOCKET %d\n" % conn.fileno())
    conn.cursor().execute("select 1")
    other_thread(conn)
    try:
        cur = conn.cursor()
        cur.execute("select 3")
        out.write("LAST %s\n" % cur.fetchone()[0])
    except psycopg2.Error as e:
        out.write("LAST ERROR %s\n" % str(e).strip().replace("\n", " "))


if sys.argv[1] == "log":
    log_mode(sys.argv[2], sys.argv[3])
else:
    stderr_mode(sys.argv[2])
