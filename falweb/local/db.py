"""SQLite for the local runtime: one connection per thread, WAL, shared by every process.

Several gunicorn workers (and their worker threads) open the same file; WAL lets readers
run beside the one writer. Writers take turns through :class:`falweb.sqlite_wal.WriterLock`
(a thread lock, then a lock on a file beside the database), which hands the turn over at
once; ``busy_timeout`` stays as the backstop for a writer that does not take it.
"""

import sqlite3
import threading

from falweb.sqlite_wal import WriterLock
from falweb.sqlite_wal import enable_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL,
    app_base TEXT NOT NULL,
    input TEXT NOT NULL,
    base_url TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'IN_QUEUE',
    webhook_url TEXT,
    headers TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    lease_owner TEXT,
    lease_expires REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    result_status INTEGER,
    error TEXT,
    error_type TEXT,
    metrics TEXT,
    start_deadline REAL,
    webhook_trusted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (status, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (status, finished_at);
CREATE INDEX IF NOT EXISTS jobs_app_waiting ON jobs (app_base, status, priority, seq);
CREATE TABLE IF NOT EXISTS logs (
    request_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    message TEXT NOT NULL,
    level TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (request_id, n)
);
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER,
    upload_id TEXT UNIQUE,
    multipart INTEGER NOT NULL DEFAULT 0,
    complete INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_age ON files (complete, created_at);
-- Bytes of every stored file (and uploaded part), kept by triggers in the same transaction
-- as each change: the storage cap is checked without summing the table.
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO usage (id, bytes) VALUES (1, (SELECT COALESCE(SUM(size), 0) FROM files));
CREATE TRIGGER IF NOT EXISTS files_usage_insert AFTER INSERT ON files BEGIN
    UPDATE usage SET bytes = bytes + COALESCE(NEW.size, 0) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS files_usage_update AFTER UPDATE OF size ON files BEGIN
    UPDATE usage SET bytes = bytes + COALESCE(NEW.size, 0) - COALESCE(OLD.size, 0) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS files_usage_delete AFTER DELETE ON files BEGIN
    UPDATE usage SET bytes = bytes - COALESCE(OLD.size, 0) WHERE id = 1;
END;
CREATE TABLE IF NOT EXISTS deliveries (
    request_id TEXT PRIMARY KEY,
    webhook_url TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT,
    trusted INTEGER NOT NULL DEFAULT 0
);
-- When a periodic task (the retention cleanup) last ran, in any process on this folder.
CREATE TABLE IF NOT EXISTS maintenance (
    task TEXT PRIMARY KEY,
    ran_at REAL NOT NULL
);
"""


class Database:
    """Per-thread connections to one SQLite file; ``transaction()`` takes the write lock."""

    dialect = "sqlite"
    #: Nothing to add to a SELECT that a transaction goes on to change: BEGIN IMMEDIATE
    #: already holds the one write lock (PostgreSQL's database says " FOR UPDATE").
    for_update = ""

    def __init__(self, path):
        self.path = path
        self._local = threading.local()
        self._all = []
        self._lock = threading.Lock()
        self._write_lock = WriterLock(path)
        # executescript commits on its own; no explicit transaction around it.
        conn = self.connect()
        conn.executescript(SCHEMA)
        self._migrate(conn)

    def _migrate(self, conn):
        # Columns added after a database was first created; CREATE TABLE IF NOT EXISTS
        # does not add them to an existing table.
        added = {
            "jobs": {"start_deadline": "REAL",
                     "webhook_trusted": "INTEGER NOT NULL DEFAULT 0"},
            "deliveries": {"trusted": "INTEGER NOT NULL DEFAULT 0"},
        }
        for table, wanted in added.items():
            columns = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in wanted.items():
                if name not in columns:
                    try:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                    except sqlite3.OperationalError:
                        # Another process added it first ("duplicate column name").
                        pass

    def connect(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            enable_wal(conn)
            # NORMAL in WAL mode survives a process crash; only an OS crash can lose the tail.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def transaction(self):
        return _Transaction(self.connect(), self._write_lock)

    def close(self):
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


class _Transaction:
    # BEGIN IMMEDIATE takes the write lock up front, so read-then-write cannot race.
    def __init__(self, conn, lock):
        self.conn = conn
        self.lock = lock

    def __enter__(self):
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
        finally:
            self.lock.release()
        return False
