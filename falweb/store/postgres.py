"""PostgreSQL behind the small interface the runtime's SQLite database has.

``connect()`` gives this thread's connection, whose ``execute(sql, params)`` takes the same
``?`` placeholders as sqlite3 and returns rows readable by name or position, so the SQL that
both dialects share is written once. ``transaction()`` is one transaction; where SQLite's
``BEGIN IMMEDIATE`` serialised every writer, PostgreSQL code locks the rows it reads
(``FOR UPDATE``, :attr:`PostgresDatabase.for_update`) or claims them with ``SKIP LOCKED``.

Migrations (:meth:`PostgresDatabase.migrate`) run at start under a transaction-scoped
advisory lock, so several processes starting at once apply each step once. LISTEN/NOTIFY
(:class:`Listener`) lets a process wait for a change instead of polling the table.
"""

import contextlib
import functools
import logging
import threading
import weakref

import psycopg

from falweb.store.settings import redact

log = logging.getLogger("falweb.store")

#: Seconds a new connection may take; a wrong host fails the start quickly, naming it.
CONNECT_TIMEOUT = 10


class Row(tuple):
    """A result row like ``sqlite3.Row``: ``row["name"]``, ``row[0]``, ``dict(row)``."""

    __slots__ = ()
    _index: dict

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self):
        return list(self._index)


def _row_factory(cursor):
    names = [column.name for column in cursor.description or ()]
    kind = type("Row", (Row,), {"_index": {name: i for i, name in enumerate(names)}})
    return lambda values: kind(values)


@functools.lru_cache(maxsize=512)
def translate(sql):
    """sqlite3's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled). The
    runtime's SQL has no ``?`` inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


class Connection:
    """One psycopg connection, spoken to as the runtime speaks to sqlite3."""

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql, params=()):
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), tuple(params))
        return cursor

    def script(self, sql):
        """Several ``;``-separated statements, no parameters (a migration step)."""
        self.raw.execute(sql)


class _Held:
    # A thread's hold on a connection; the thread-local slot drops it when the thread ends
    # (a request thread of a threaded server), and the connection goes back to the idle
    # list for the next thread instead of staying open until the process exits.
    def __init__(self, db, conn):
        self.conn = conn
        # A weak reference: a held connection must not keep its database object alive.
        weakref.finalize(self, _give_back, weakref.ref(db), conn)


def _give_back(db_ref, conn):
    db = db_ref()
    if db is not None:
        db._give_back(conn)
    else:
        with contextlib.suppress(psycopg.Error):
            conn.raw.close()


class PostgresDatabase:
    """Connections to one PostgreSQL database (``url``): one per thread while it lives, kept
    for the next thread when it ends (at most :attr:`max_idle` idle)."""

    max_idle = 16

    dialect = "postgres"
    #: Appended to a SELECT whose rows the transaction goes on to change: PostgreSQL locks
    #: them, as SQLite's one write lock did for the whole file.
    for_update = " FOR UPDATE"

    def __init__(self, url, application_name="falweb"):
        self.url = url
        self.application_name = application_name
        self._local = threading.local()
        self._idle = []
        self._open = set()
        self._lock = threading.Lock()
        self._closed = False
        self.connect()  # fail at start, naming the setting, rather than at the first request

    def open_raw(self, autocommit=True):
        """A new psycopg connection of this database's own (for a listener)."""
        try:
            return psycopg.connect(self.url, autocommit=autocommit, row_factory=_row_factory,
                                   connect_timeout=CONNECT_TIMEOUT,
                                   application_name=self.application_name)
        except psycopg.OperationalError as exc:
            # The server's reason (no such host, bad password) without the URL's password.
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc)
            raise ConnectionError(f"FALWEB_DATABASE_URL: cannot connect to "
                                  f"{redact(self.url)}: {reason}") from None

    def connect(self):
        held = getattr(self._local, "held", None)
        if held is not None and not (held.conn.raw.closed or held.conn.raw.broken):
            return held.conn
        # A connection broken by a server restart is replaced, not kept failing.
        conn = None
        with self._lock:
            while self._idle and conn is None:
                conn = self._idle.pop()
                if conn.raw.closed or conn.raw.broken:
                    self._open.discard(conn)
                    conn = None
        if conn is None:
            conn = Connection(self.open_raw())
            with self._lock:
                self._open.add(conn)
        self._local.held = _Held(self, conn)
        return conn

    def _give_back(self, conn):
        raw = conn.raw
        reusable = not (raw.closed or raw.broken) and \
            raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._lock:
            if reusable and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
            self._open.discard(conn)
        with contextlib.suppress(psycopg.Error):
            raw.close()

    @contextlib.contextmanager
    def transaction(self):
        """One transaction on this thread's connection: committed on exit, rolled back on
        an exception."""
        conn = self.connect()
        with conn.raw.transaction():
            yield conn

    def migrate(self, name, steps):
        """Apply the ``steps`` (SQL scripts) of the schema ``name`` not applied yet, in
        order, each once, however many processes start together: they queue on an
        advisory lock and each finds what the first one did."""
        conn = self.connect()
        with conn.raw.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"falweb:{name}",))
            conn.script("CREATE TABLE IF NOT EXISTS falweb_migrations ("
                        " name TEXT PRIMARY KEY, steps INTEGER NOT NULL)")
            row = conn.execute("SELECT steps FROM falweb_migrations WHERE name = ?",
                               (name,)).fetchone()
            done = row["steps"] if row else 0
            for step in steps[done:]:
                conn.script(step)
            if len(steps) > done:
                conn.execute("INSERT INTO falweb_migrations (name, steps) VALUES (?, ?)"
                             " ON CONFLICT (name) DO UPDATE SET steps = EXCLUDED.steps",
                             (name, len(steps)))

    def secret(self, name, make):
        """The bytes stored as ``name``; when there are none, ``make()``'s, stored first.
        Every process on the database ends up with the first one's (as
        :func:`falweb.instance_files.read_or_create` does for a folder)."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO falweb_secrets (name, value) VALUES (?, ?)"
                         " ON CONFLICT (name) DO NOTHING", (name, make()))
            return bytes(conn.execute("SELECT value FROM falweb_secrets WHERE name = ?",
                                      (name,)).fetchone()["value"])

    def close(self):
        with self._lock:
            self._closed = True
            conns, self._open, self._idle = list(self._open), set(), []
        for conn in conns:
            with contextlib.suppress(psycopg.Error):
                conn.raw.close()
        self._local = threading.local()


SECRETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS falweb_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
"""


class Listener:
    """A thread that LISTENs on ``channels`` and calls ``on_notify(channel, payload)`` for
    each notification; after a lost connection it reconnects and calls
    ``on_notify(None, None)`` (anything may have changed meanwhile)."""

    def __init__(self, db, channels, on_notify, name="falweb-listen"):
        self.db = db
        self.channels = list(channels)
        self.on_notify = on_notify
        self._stop = threading.Event()
        self._conn = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        first = True
        while not self._stop.is_set():
            try:
                conn = self._conn = self.db.open_raw()
                for channel in self.channels:
                    conn.execute(f"LISTEN {channel}")
                if not first:
                    self.on_notify(None, None)
                first = False
                while not self._stop.is_set():
                    # A short wait, so that close() returns at once.
                    for note in conn.notifies(timeout=0.1):
                        self.on_notify(note.channel, note.payload)
            except (psycopg.Error, ConnectionError) as exc:
                if self._stop.is_set():
                    break
                log.warning("listening for changes failed (%s); reconnecting",
                            type(exc).__name__)
                self._stop.wait(1.0)
            finally:
                if self._conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
