"""Putting a SQLite file in WAL mode, safely when several processes open it at once.

WAL lets readers run beside the one writer, and the mode stays with the file. Switching a
fresh file to it needs a lock that SQLite does not wait for (``busy_timeout`` does not
apply): two gunicorn workers starting together on a new instance folder saw "database is
locked" and one of them died. So the switch is made only when the file is not in WAL yet,
and retried for a while when another process holds the lock.
"""

import sqlite3
import time

RETRY_SECONDS = 10.0


def enable_wal(conn):
    """Make ``conn``'s database use WAL; raises ``sqlite3.OperationalError`` if it cannot
    within ``RETRY_SECONDS``."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
