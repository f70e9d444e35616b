"""pqpoll.py - the client tests' driver of an async psycopg2 connection:
poll() until the connect or statement is done, every step bounded."""
import select, time
import psycopg2, psycopg2.extensions as ext


def wait(conn, limit):
    """Drive conn.poll() until done; TimeoutError after `limit` seconds."""
    end = time.monotonic() + limit
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer within %ss" % limit)
        if state == ext.POLL_READ:
            select.select([conn.fileno()], [], [], left)
        elif state == ext.POLL_WRITE:
            select.select([], [conn.fileno()], [], left)
        else:
            raise psycopg2.OperationalError("poll() returned %s" % state)
