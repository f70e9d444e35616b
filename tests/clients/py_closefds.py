#!/usr/bin/python3
"""A daemon-like psycopg2 program that closes the descriptors it did not
open itself after it has connected, opens a data file (which takes the
lowest free number), writes to it, and uses its connection from another
thread, which the shim logs (tests/integration/t_out_closefds.sh).

    py_closefds.py LOGFILE DATAFILE

Connection parameters come from the PG* environment.  The descriptor of
LOGFILE (the shim's log, found in /proc/self/fd) is the one closed: what a
daemon's close_range(3, ~0) does to it, keeping its own socket.  Prints
"REUSED n" when the data file got that number.
"""
import os
import sys
import threading

import psycopg2

logfile, datafile = sys.argv[1], sys.argv[2]
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
# another thread's statement: the shim logs the cross-thread use (warn)
t = threading.Thread(target=lambda: conn.cursor().execute("select 2"))
t.start()
t.join()
os.write(fd, b"more of it\n")
