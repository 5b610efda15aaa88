"""A ``limits`` storage on SQLite: rate-limit counters that every gunicorn worker shares
through one file, with no server to run.

The ``limits`` library ships storages for memory (one process), Redis, Memcached and
MongoDB; this one adds ``sqlite:///<path>`` (an absolute path after the third slash, as
SQLAlchemy writes it: ``sqlite:////srv/falweb/instance/limits.sqlite``). It implements what
the fixed-window strategy needs (``incr``, ``get``, ``get_expiry``, ``check``, ``reset``,
``clear``); each is one statement in its own short transaction, in WAL mode so readers never
wait for a writer.

Connections are pooled per process (a thread borrows one for one statement): a connection
opened before gunicorn forks is never used by a worker, and none is left to a thread that
ended.
"""

import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager

from limits.storage import Storage

from falweb.sqlite_wal import enable_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counter_expires ON counter (expires);
"""

# Expired counters are dropped this often (per process), this many at a time, so the table
# holds about one row per live window.
PURGE_SECONDS = 60.0
PURGE_BATCH = 500


def path_of(uri):
    """The file named by a ``sqlite:///<path>`` URI (``ValueError`` for anything else)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        raise ValueError(f"expected sqlite:///<path to a file>, not {uri!r}")
    return uri[len(prefix):].split("?", 1)[0]


class SQLiteStorage(Storage):
    """Fixed-window counters in a SQLite file (see the module docstring). ``timeout``: the
    seconds a statement waits for another's write lock (each holds it for microseconds;
    past that, :mod:`falweb.limits` counts in the process rather than keep a request)."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri, wrap_exceptions=False, timeout=3.0, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = path_of(uri)
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._pool = []
        self._pid = os.getpid()
        # Pooled connections are closed with the storage, never left to the collector.
        weakref.finalize(self, _close_all, self._pool)
        self._next_purge = 0.0
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with self._connection() as db:
            db.executescript(SCHEMA)

    @property
    def base_exceptions(self):
        return sqlite3.Error

    @contextmanager
    def _connection(self):
        with self._lock:
            if self._pid != os.getpid():
                self._pool.clear()  # the parent's, after a fork: never used here
                self._pid = os.getpid()
            db = self._pool.pop() if self._pool else None
        if db is None:
            # isolation_level=None: every statement commits on its own, a transaction as
            # short as one statement.
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                 check_same_thread=False)
            enable_wal(db)
            # Counters, not records: losing the last writes to a power cut costs nothing.
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield db
        except BaseException:
            db.close()  # in an unknown state: not back into the pool
            raise
        with self._lock:
            if self._pid == os.getpid():
                self._pool.append(db)
                return
        db.close()

    def close(self):
        """Close the pooled connections (the storage stays usable: new ones open on demand)."""
        with self._lock:
            _close_all(self._pool)

    def incr(self, key, expiry, amount=1):
        """Add ``amount`` to ``key``'s counter and return the new count; a counter that is
        missing or expired starts again at ``amount``, expiring ``expiry`` seconds from now."""
        now = time.time()
        with self._connection() as db:
            value = db.execute(
            "INSERT INTO counter (key, value, expires) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET"
                " value = CASE WHEN expires <= ? THEN excluded.value"
                " ELSE value + excluded.value END,"
                " expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END"
                " RETURNING value",
                (key, amount, now + expiry, now, now),
            ).fetchone()[0]
            if now >= self._next_purge:
                self._next_purge = now + PURGE_SECONDS
                self._purge(db, now)
        return value

    def _purge(self, db, now):
        db.execute(
            "DELETE FROM counter WHERE key IN"
            " (SELECT key FROM counter WHERE expires <= ? LIMIT ?)", (now, PURGE_BATCH))

    def get(self, key):
        """The counter of ``key`` (0 when missing or expired)."""
        with self._connection() as db:
            row = db.execute("SELECT value FROM counter WHERE key = ? AND expires > ?",
                             (key, time.time())).fetchone()
        return row[0] if row else 0

    def get_expiry(self, key):
        """When ``key``'s window ends (a Unix time; now when there is none)."""
        now = time.time()
        with self._connection() as db:
            row = db.execute("SELECT expires FROM counter WHERE key = ? AND expires > ?",
                             (key, now)).fetchone()
        return row[0] if row else now

    def check(self):
        """Whether the file can be read."""
        try:
            with self._connection() as db:
                db.execute("SELECT 1 FROM counter LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def reset(self):
        """Forget every counter; returns how many there were."""
        with self._connection() as db:
            return db.execute("DELETE FROM counter").rowcount

    def clear(self, key):
        """Forget ``key``'s counter."""
        with self._connection() as db:
            db.execute("DELETE FROM counter WHERE key = ?", (key,))


def _close_all(pool):
    while pool:
        pool.pop().close()
