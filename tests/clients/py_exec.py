#!/usr/bin/python3
"""A psycopg2 program that replaces itself with exec() while its connection
is inside a transaction (tests/integration/t_out_exec.sh).

Connection parameters come from the PG* environment.  Usage:

    py_exec.py exec-ok   APP TABLE PROG ARG...  begin; insert; exec PROG
                                                (os.execvp: a PATH search)
    py_exec.py exec-fail APP TABLE SECONDS      begin; insert; exec a program
                                                that does not exist (it fails),
                                                hold the transaction SECONDS,
                                                then insert again and commit
    py_exec.py one       APP TABLE              one autocommit insert, timed

Each insert logs (who, clock_timestamp()) into TABLE (who text, t timestamptz).
Prints "IN-XACT" once inside the transaction, "EXEC-FAILED errno" when the
exec failed, "OK seconds" / "ERR seconds pgcode message" for `one`.
"""
import os
import sys
import time

import psycopg2


def log(cur, table, who):
    cur.execute("insert into " + table + " (who, t) values (%s, clock_timestamp())", (who,))


def main():
    mode, app, table = sys.argv[1], sys.argv[2], sys.argv[3]
    conn = psycopg2.connect(application_name=app)
    if mode == "one":
        conn.autocommit = True
        t0 = time.time()
        try:
            log(conn.cursor(), table, app)
            print("OK %.3f" % (time.time() - t0), flush=True)
        except psycopg2.Error as e:
            print("ERR %.3f %s %s" % (time.time() - t0, e.pgcode, str(e).strip()), flush=True)
        return
    cur = conn.cursor()
    log(cur, table, app + "-begin")      # psycopg2 opened a transaction
    print("IN-XACT", flush=True)
    if mode == "exec-ok":
        os.execvp(sys.argv[4], sys.argv[4:])
    try:
        os.execv("/nonexistent/pqshim-no-such-program", ["x"])
    except OSError as e:
        print("EXEC-FAILED %d" % e.errno, flush=True)
    time.sleep(float(sys.argv[4]))
    log(cur, table, app + "-end")
    conn.commit()
    print("COMMITTED", flush=True)


main()
