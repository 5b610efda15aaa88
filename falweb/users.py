"""Users, API tokens and login throttling: one SQLite file in the instance folder.

Passwords are kept as Werkzeug password hashes (scrypt); API tokens as SHA-256 digests, so a
copy of the file gives neither. The ``falweb users`` command manages users; the account
page and ``falweb users token`` make tokens, shown once.

Login guessing is throttled per user name and per client address: after
``MAX_FAILURES`` failures within ``FAILURE_WINDOW`` seconds, that name (or address) waits
``LOCKOUT_SECONDS``, doubled for each further failure.
"""

import functools
import hashlib
import os
import secrets
import sqlite3
import threading
import time

from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from falweb.sqlite_wal import enable_wal

DB_NAME = "users.sqlite"
TOKEN_PREFIX = "falweb_"

# How long the answer "is there any user?" is kept (see Users.any).
ANY_SECONDS = 2.0

MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
LOCKOUT_SECONDS = 30
MAX_LOCKOUT_SECONDS = 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS user (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_token (
    digest TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES user (name) ON DELETE CASCADE,
    label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS login_failure (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    first REAL NOT NULL,
    blocked_until REAL NOT NULL DEFAULT 0
);
-- Requests made through the proxy, by the user who made them (pages' requests are in history).
CREATE TABLE IF NOT EXISTS proxy_request (
    request_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created REAL NOT NULL
);
"""

VALID_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


class UserError(ValueError):
    """A user name or password that cannot be used; the message says why."""


_inherited = []


class Users:
    """The store at ``instance_path/users.sqlite``; one short transaction per call on the
    calling thread's own connection, so it is safe from any thread and any gunicorn worker."""

    def __init__(self, instance_path):
        self.path = os.path.join(instance_path, DB_NAME)
        self._any = None
        # Each thread keeps one connection (opened in this process): opening one per call
        # cost more than the query, and the proxy asks for a request's owner at every poll.
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self):
        held = getattr(self._local, "db", None)
        if held is None or held[0] != os.getpid():
            if held is not None:
                # Inherited across a fork: never used nor closed here (closing would drop
                # the parent's locks on the file), so kept from the garbage collector.
                _inherited.append(held[1])
            db = sqlite3.connect(self.path, timeout=10)
            db.row_factory = sqlite3.Row
            enable_wal(db)
            db.execute("PRAGMA foreign_keys=ON")
            held = self._local.db = (os.getpid(), db)
        return _Transaction(held[1])

    # -- users ------------------------------------------------------------------------------

    def add(self, name, password, admin=False):
        """Create a user, or set an existing one's password and admin flag."""
        check_name(name)
        if not password or len(password) < 8:
            raise UserError("a password needs at least 8 characters")
        with self._connect() as db:
            db.execute(
                "INSERT INTO user (name, password_hash, admin, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,"
                " admin = excluded.admin",
                (name, generate_password_hash(password), int(admin), time.time()))
        self._any = None

    def remove(self, name):
        """Delete a user and their tokens; True when there was one."""
        self._any = None
        with self._connect() as db:
            return db.execute("DELETE FROM user WHERE name = ?", (name,)).rowcount > 0

    def list(self):
        """``[{"name", "admin", "created", "tokens"}]``, by name."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT name, admin, created, (SELECT COUNT(*) FROM api_token t"
                " WHERE t.user_name = u.name) AS tokens FROM user u ORDER BY name").fetchall()
        return [{**dict(row), "admin": bool(row["admin"])} for row in rows]

    def get(self, name):
        with self._connect() as db:
            row = db.execute("SELECT name, admin FROM user WHERE name = ?", (name,)).fetchone()
        return {"name": row["name"], "admin": bool(row["admin"])} if row else None

    def any(self):
        """Whether any user exists; asked on every request (auto mode), so the answer is
        kept ``ANY_SECONDS`` (another process may add the first user meanwhile)."""
        cached = self._any
        if cached is not None and time.monotonic() - cached[1] < ANY_SECONDS:
            return cached[0]
        with self._connect() as db:
            found = db.execute("SELECT 1 FROM user LIMIT 1").fetchone() is not None
        self._any = (found, time.monotonic())
        return found

    def check_password(self, name, password):
        """The user when ``password`` is theirs, else None (the same work either way)."""
        # First, for every name: the one-time cost of making it is paid alike by all.
        dummy = _dummy_hash()
        with self._connect() as db:
            row = db.execute("SELECT name, password_hash, admin FROM user WHERE name = ?",
                             (name,)).fetchone()
        # Hash even for an unknown name, so timing does not tell which names exist.
        stored = row["password_hash"] if row else dummy
        if check_password_hash(stored, password or "") and row is not None:
            return {"name": row["name"], "admin": bool(row["admin"])}
        return None

    # -- API tokens -------------------------------------------------------------------------

    def create_token(self, name, label=""):
        """A new API token for user ``name``, returned once (only its digest is kept)."""
        if self.get(name) is None:
            raise UserError(f"no user named {name!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._connect() as db:
            db.execute("INSERT INTO api_token (digest, user_name, label, created)"
                       " VALUES (?, ?, ?, ?)", (_digest(token), name, label[:100], time.time()))
        return token

    def tokens(self, name):
        """The user's tokens: ``[{"id", "label", "created", "last_used"}]`` (no secrets)."""
        with self._connect() as db:
            rows = db.execute("SELECT digest, label, created, last_used FROM api_token"
                              " WHERE user_name = ? ORDER BY created", (name,)).fetchall()
        return [{"id": row["digest"][:12], "label": row["label"], "created": row["created"],
                 "last_used": row["last_used"]} for row in rows]

    def revoke_token(self, name, token_id):
        with self._connect() as db:
            return db.execute("DELETE FROM api_token WHERE user_name = ? AND digest LIKE ?",
                              (name, token_id.replace("%", "") + "%")).rowcount > 0

    def user_of_token(self, token):
        """The user an API token belongs to, or None."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT u.name, u.admin FROM api_token t JOIN user u ON u.name = t.user_name"
                " WHERE t.digest = ?", (_digest(token),)).fetchone()
            if row is not None:
                db.execute("UPDATE api_token SET last_used = ? WHERE digest = ?",
                           (time.time(), _digest(token)))
        return {"name": row["name"], "admin": bool(row["admin"])} if row else None

    # -- throttling -------------------------------------------------------------------------

    def blocked_for(self, keys):
        """Seconds until every one of ``keys`` may try to log in again (0: now)."""
        now = time.time()
        with self._connect() as db:
            rows = db.execute(
                f"SELECT blocked_until FROM login_failure WHERE key IN"
                f" ({', '.join('?' * len(keys))})", list(keys)).fetchall()
        return max([row["blocked_until"] - now for row in rows] + [0])

    def failed(self, keys):
        """Count a failed login against each of ``keys``."""
        now = time.time()
        with self._connect() as db:
            for key in keys:
                row = db.execute("SELECT count, first FROM login_failure WHERE key = ?",
                                 (key,)).fetchone()
                count = 1 if row is None or now - row["first"] > FAILURE_WINDOW \
                    else row["count"] + 1
                first = now if count == 1 else row["first"]
                over = count - MAX_FAILURES
                blocked = now + min(LOCKOUT_SECONDS * 2 ** over, MAX_LOCKOUT_SECONDS) \
                    if over >= 0 else 0
                db.execute("INSERT OR REPLACE INTO login_failure (key, count, first,"
                           " blocked_until) VALUES (?, ?, ?, ?)", (key, count, first, blocked))

    def succeeded(self, keys):
        with self._connect() as db:
            db.execute(f"DELETE FROM login_failure WHERE key IN"
                       f" ({', '.join('?' * len(keys))})", list(keys))

    # -- requests made through the proxy ----------------------------------------------------

    def own_proxy_request(self, request_id, owner):
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO proxy_request (request_id, owner, created)"
                       " VALUES (?, ?, ?)", (request_id, owner, time.time()))

    def proxy_request_owner(self, request_id):
        with self._connect() as db:
            row = db.execute("SELECT owner FROM proxy_request WHERE request_id = ?",
                             (request_id,)).fetchone()
        return row["owner"] if row else None

    # -- retention --------------------------------------------------------------------------

    def clean_up(self, proxy_requests_before=None, now=None):
        """Delete the login failures that no longer count nor block, and (when
        ``proxy_requests_before`` is given) the proxy requests made before that time, as
        history forgets its rows. Returns ``{"login_failures": n, "proxy_requests": n}``."""
        now = time.time() if now is None else now
        with self._connect() as db:
            failures = db.execute(
                "DELETE FROM login_failure WHERE first < ? AND blocked_until < ?",
                (now - FAILURE_WINDOW, now)).rowcount
            requests = 0
            if proxy_requests_before is not None:
                requests = db.execute("DELETE FROM proxy_request WHERE created < ?",
                                      (proxy_requests_before,)).rowcount
        return {"login_failures": failures, "proxy_requests": requests}


class _Transaction:
    """``with`` a connection: commit, or roll back on an error; the connection stays open."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.db.commit()
        else:
            self.db.rollback()


def check_name(name):
    if not name or len(name) > 64 or not set(name) <= VALID_NAME:
        raise UserError("a user name is 1 to 64 letters, digits or . _ @ -")


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _dummy_hash():
    # Made at the first login, not at import: a scrypt hash was 0.15 s of every start.
    return generate_password_hash(secrets.token_hex(16))
