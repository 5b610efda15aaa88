"""SQLite files shared by several processes: WAL mode, and writers taking turns.

WAL lets readers run beside the one writer, and the mode stays with the file. Switching a
fresh file to it needs a lock that SQLite does not wait for (``busy_timeout`` does not
apply): two gunicorn workers starting together on a new instance folder saw "database is
locked" and one of them died. So the switch is made only when the file is not in WAL yet,
and retried for a while when another process holds the lock.

Writers wait for each other in :class:`WriterLock`, not in SQLite's busy handler: that one
polls, sleeping 1, 2, 5, 10… ms between tries, so under load most of a write's time was
spent asleep while the file was free (1 busy sleep a job, with 2 gunicorn workers).
"""

import fcntl
import os
import sqlite3
import threading
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


class WriterLock:
    """One writer at a time for a SQLite file: threads of this process queue on a lock,
    processes on an ``flock`` of ``<database>.writer-lock``; the kernel hands the turn over
    the moment it is free. Held around ``BEGIN IMMEDIATE`` … ``COMMIT``.

    The lock is a separate file, not the database: on NFS ``flock`` is emulated with the
    same byte-range locks SQLite takes, which would deadlock. A database in memory (or a
    folder that cannot take the file) has only the thread lock.
    """

    def __init__(self, database_path):
        self._threads = threading.Lock()
        self._fd = None
        if database_path and database_path != ":memory:":
            try:
                self._fd = os.open(f"{database_path}.writer-lock",
                                   os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._fd = None

    def acquire(self):
        self._threads.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise

    def release(self):
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
