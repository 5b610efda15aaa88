"""The app's history on PostgreSQL (``FALWEB_DATABASE_URL``), beside its SQLite file.

:mod:`falweb.history` speaks to its database as to a ``sqlite3`` connection (``execute``,
``commit``, ``rollback``, ``close``) with ``?`` placeholders; :class:`HistoryConnection`
speaks that way to PostgreSQL, so the module's SQL is written once. What differs is here:
the schema (SQLite's is :data:`falweb.history.SCHEMA`), and the write lock: SQLite's
``BEGIN IMMEDIATE`` serialises every writer of the file; on PostgreSQL the same
transactions take one advisory lock, so that a webhook is still either held before its row
exists or finds the row, whichever app host each reaches.
"""

from falweb.store import settings as store_settings

POSTGRES_SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS request (
        request_id TEXT PRIMARY KEY,
        endpoint_id TEXT NOT NULL,
        backend TEXT NOT NULL,
        input TEXT NOT NULL,
        status TEXT NOT NULL,
        queue_position INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        logs TEXT NOT NULL DEFAULT '[]',
        result TEXT,
        error TEXT,
        prompt TEXT,
        thumbnail_url TEXT,
        created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        finished DOUBLE PRECISION,
        synthetic INTEGER NOT NULL DEFAULT 0,
        owner TEXT
    );
    CREATE INDEX IF NOT EXISTS request_created ON request (created DESC);
    CREATE INDEX IF NOT EXISTS request_owner ON request (owner, created DESC);
    CREATE INDEX IF NOT EXISTS request_ended ON request (COALESCE(finished, updated))
        WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');
    CREATE TABLE IF NOT EXISTS held_webhook (
        request_id TEXT PRIMARY KEY,
        body BYTEA NOT NULL,
        received DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS submission (
        token TEXT PRIMARY KEY,
        request_id TEXT,
        created DOUBLE PRECISION NOT NULL
    );
    """,
]

#: The second key of a page's order, for rows created at the same instant: SQLite's rowid
#: (insertion order), PostgreSQL's primary key (it has no rowid).
TIEBREAK = {"sqlite": "rowid", "postgres": "request_id"}


class HistoryConnection:
    """This thread's PostgreSQL connection, used as :mod:`falweb.history` uses sqlite3's.

    It runs in autocommit: a lone statement commits at once (``commit()`` then has nothing
    to do), and :meth:`begin_immediate` opens an explicit transaction that ``commit()`` or
    ``rollback()`` ends. ``close()`` leaves the connection to its thread's pool.
    """

    dialect = "postgres"

    def __init__(self, db):
        self.conn = db.connect()

    def execute(self, sql, params=()):
        return self.conn.execute(sql, params)

    def begin_immediate(self):
        self.conn.raw.execute("BEGIN")
        self.conn.raw.execute("SELECT pg_advisory_xact_lock(hashtext('falweb:history'))")

    def _in_transaction(self):
        import psycopg

        return self.conn.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def commit(self):
        if self._in_transaction():
            self.conn.raw.execute("COMMIT")

    def rollback(self):
        if self._in_transaction():
            self.conn.raw.execute("ROLLBACK")

    def close(self):
        self.rollback()


def database(app):
    """The app's PostgreSQL database (migrated once per process), or None for SQLite."""
    state = app.extensions.setdefault("falweb_history_sql", {})
    if "db" not in state:
        url = store_settings.database_url(app.config)
        db = None
        if url is not None:
            from falweb.store.postgres import PostgresDatabase

            db = PostgresDatabase(url, application_name="falweb-app")
            db.migrate("history", POSTGRES_SCHEMA)
        state["db"] = db
    return state["db"]
