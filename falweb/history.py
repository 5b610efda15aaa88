"""Request history: one SQLite row per request, in the instance folder (flaskr's db shape).

A row is written when a submit is accepted, before the user is answered, and is kept up to
date by the request page's status polls and by verified webhooks (:mod:`falweb.history_sync`
talks to the backend; this module only stores). It stores the exact validated input, so a
request can be re-run, and fal's result as JSON text, so seeds larger than 2**63 survive
unchanged.

A webhook can arrive before its row exists (the backend may finish a request before the
submit's answer reaches us): it is *held* here and applied when :func:`add` writes the row.

Statuses: fal's ``IN_QUEUE``, ``IN_PROGRESS`` and ``COMPLETED``, plus two terminal ones of
falweb's own: ``FAILED`` (fal reported an error) and ``CANCELLED``.
"""

import json
import os
import secrets
import sqlite3
import threading
import time

from flask import current_app
from flask import g

from falweb import history_sql
from falweb.media_kinds import thumbnail_url
from falweb.sqlite_wal import enable_wal

DB_NAME = "history.sqlite"

PENDING = ("IN_QUEUE", "IN_PROGRESS")
# fal's error_type on a COMPLETED status when the request was cancelled (also by another client).
CANCELLED_ERROR_TYPE = "request_cancelled"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

SCHEMA = """
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
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL,
    synthetic INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS request_created ON request (created DESC);
CREATE TABLE IF NOT EXISTS held_webhook (
    request_id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    received REAL NOT NULL
);
-- One row per form submission token, so that a form posted twice makes one request.
CREATE TABLE IF NOT EXISTS submission (
    token TEXT PRIMARY KEY,
    request_id TEXT,
    created REAL NOT NULL
);
"""

# A submission token is remembered this long (a form left open longer gets a new request).
SUBMISSION_SECONDS = 24 * 3600

# A held webhook whose request never shows up (submitted by another app) is forgotten.
HELD_WEBHOOK_SECONDS = 24 * 3600

# Columns a caller may change with update(); JSON ones are encoded here.
_JSON_COLUMNS = ("logs", "result", "error", "input")
_COLUMNS = (
    "status",
    "queue_position",
    "cancel_requested",
    "logs",
    "result",
    "error",
    "thumbnail_url",
    "finished",
)

# Thumbnails are inlined in the history page; a large data URI would bloat every page view.
_MAX_INLINE_THUMBNAIL = 64 * 1024


def db_path(app=None):
    app = app or current_app
    return os.path.join(app.instance_path, DB_NAME)


def connect(path):
    """A connection to the history database at ``path`` (WAL: several workers share it)."""
    db = sqlite3.connect(path, timeout=10)
    db.row_factory = sqlite3.Row
    enable_wal(db)
    return db


def open_db(app=None):
    """A connection to the app's history: PostgreSQL at ``FALWEB_DATABASE_URL``
    (:mod:`falweb.history_sql`), else the SQLite file in the instance folder. Close it."""
    app = app or current_app
    shared = history_sql.database(app)
    if shared is not None:
        return history_sql.HistoryConnection(shared)
    return connect(db_path(app))


# Each thread keeps its SQLite connection between requests: opening one (a file open and a
# read of its journal mode) was about half of a polled status partial's CPU in process.
_held = threading.local()
# Connections a forked child inherited: never used there, and never closed there either
# (closing would release the parent's locks on the file); kept so that nothing closes them.
_inherited = []


def _thread_db(path):
    key = (os.getpid(), path)
    held = getattr(_held, "db", None)
    if held is not None:
        if held[0] == key:
            return held[1]
        if held[0][0] == key[0]:
            held[1].close()  # this thread moved to another file (tests: another app)
        else:
            _inherited.append(held[1])
    db = connect(path)
    _held.db = (key, db)
    return db


def get_db():
    """The request's connection: PostgreSQL's (back to its thread's pool at teardown), or
    this thread's own SQLite connection, kept open between requests."""
    if "history_db" not in g:
        if history_sql.database(current_app) is not None:
            g.history_db = open_db()
        else:
            g.history_db = _thread_db(db_path())
    return g.history_db


def close_db(e=None):
    db = g.pop("history_db", None)
    if db is None:
        return
    if isinstance(db, sqlite3.Connection):
        # Kept for the thread's next request; what a failed request left uncommitted is
        # dropped, as closing it did.
        if db.in_transaction:
            db.rollback()
    else:
        db.close()


def init_db(app=None):
    """Create the tables if they do not exist (safe to call on every start)."""
    if history_sql.database(app or current_app) is not None:
        return  # migrated when the process first opened it
    db = connect(db_path(app))
    try:
        db.executescript(SCHEMA)
        # Columns added after a history file was first created; one write transaction, so
        # that workers starting together on an old file do not both add a column.
        db.execute("BEGIN IMMEDIATE")
        columns = {row[1] for row in db.execute("PRAGMA table_info(request)")}
        if "synthetic" not in columns:
            db.execute("ALTER TABLE request ADD COLUMN synthetic INTEGER NOT NULL DEFAULT 0")
            db.execute("UPDATE request SET synthetic = 1 WHERE backend = 'local'")
        if "owner" not in columns:
            # Rows from before access control belong to nobody: admins see them.
            db.execute("ALTER TABLE request ADD COLUMN owner TEXT")
        db.execute("CREATE INDEX IF NOT EXISTS request_owner ON request (owner, created DESC)")
        # The retention cleanup finds finished rows by when they ended.
        db.execute("CREATE INDEX IF NOT EXISTS request_ended ON request"
                   " (COALESCE(finished, updated)) WHERE status IN ('COMPLETED', 'FAILED',"
                   " 'CANCELLED')")
        db.commit()
    finally:
        db.close()


def _decode(row):
    if row is None:
        return None
    item = dict(row)
    for column in _JSON_COLUMNS:
        if item.get(column) is not None:
            item[column] = json.loads(item[column])
    item["logs"] = item.get("logs") or []
    item["cancel_requested"] = bool(item.get("cancel_requested"))
    item["synthetic"] = bool(item.get("synthetic"))
    return item


def _thumbnail(result):
    # The first image, else a documented endpoint's image or video output.
    url = thumbnail_url(result)
    if not isinstance(url, str) or len(url) > _MAX_INLINE_THUMBNAIL:
        return None
    return url


def add(request_id, endpoint_id, input, backend, status="IN_QUEUE", db=None, synthetic=False,
        owner=None):
    """Record a newly submitted request; a repeated id keeps its row.

    Returns the body of a webhook held for this request (it came first), now taken, or
    None. ``synthetic``: its images will be the preview engine's drawings; ``owner``: the
    user who made it (None: only admins see it).
    """
    db = db or get_db()
    now = time.time()
    prompt = input.get("prompt") if isinstance(input.get("prompt"), str) else None
    # One write transaction with hold_webhook()'s: a webhook is either held before the row
    # exists (and taken here) or finds the row; never neither.
    with _immediate(db):
        db.execute(
            "INSERT INTO request (request_id, endpoint_id, backend, input, status, prompt,"
            " created, updated, synthetic, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (request_id) DO UPDATE SET endpoint_id = excluded.endpoint_id,"
            " input = excluded.input, prompt = excluded.prompt",
            (request_id, endpoint_id, backend, json.dumps(input), status, prompt, now, now,
             int(bool(synthetic)), owner),
        )
        held = db.execute("DELETE FROM held_webhook WHERE request_id = ? RETURNING body",
                          (request_id,)).fetchone()
    return bytes(held[0]) if held else None


def get_or_hold_webhook(request_id, body, db=None):
    """The row of ``request_id``; or, when there is none yet, None after keeping ``body``
    for :func:`add` to hand back (a repeated delivery replaces the one held)."""
    db = db or get_db()
    with _immediate(db):
        row = db.execute("SELECT * FROM request WHERE request_id = ?",
                         (request_id,)).fetchone()
        if row is None:
            db.execute("DELETE FROM held_webhook WHERE received < ?",
                       (time.time() - HELD_WEBHOOK_SECONDS,))
            db.execute("INSERT INTO held_webhook (request_id, body, received)"
                       " VALUES (?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET"
                       " body = excluded.body, received = excluded.received",
                       (request_id, body, time.time()))
    return _decode(row)


def new_submission_token():
    """A fresh token for a form that submits work: posting it twice (a double click, a
    resent post) makes one request (:func:`claim_submission`)."""
    return secrets.token_urlsafe(18)


def claim_submission(token, db=None):
    """True when ``token`` is new and now ours to submit; False when another post of the same
    form has it (see :func:`submission_state`)."""
    db = db or get_db()
    with _immediate(db):
        db.execute("DELETE FROM submission WHERE created < ?",
                   (time.time() - SUBMISSION_SECONDS,))
        claimed = db.execute("INSERT INTO submission (token, created) VALUES (?, ?)"
                             " ON CONFLICT (token) DO NOTHING", (token, time.time())).rowcount
    return bool(claimed)


def finish_submission(token, request_id, db=None):
    """Record the request a claimed token made; ``request_id=None`` releases the token (the
    submit failed, so posting the form again may try again)."""
    db = db or get_db()
    with _immediate(db):
        if request_id is None:
            db.execute("DELETE FROM submission WHERE token = ?", (token,))
        else:
            db.execute("UPDATE submission SET request_id = ? WHERE token = ?",
                       (request_id, token))


def submission_state(token, db=None):
    """``(claimed, request_id)`` of a token: whether it is claimed, and its request once
    the submit that claimed it has one."""
    db = db or get_db()
    db.commit()  # read what other connections committed, not an old snapshot
    row = db.execute("SELECT request_id FROM submission WHERE token = ?", (token,)).fetchone()
    return (row is not None, row[0] if row else None)


class _immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rollback on error): the write lock from the start."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        if hasattr(self.db, "begin_immediate"):  # PostgreSQL (falweb.history_sql)
            self.db.begin_immediate()
            return
        self.db.commit()  # the sqlite3 module may hold an implicit transaction open
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.db.commit()
        else:
            self.db.rollback()


def get(request_id, db=None):
    """The row of ``request_id`` as a dict (JSON columns decoded), or None."""
    db = db or get_db()
    row = db.execute("SELECT * FROM request WHERE request_id = ?", (request_id,)).fetchone()
    return _decode(row)


def update(request_id, db=None, only_unfinished=False, **fields):
    """Change some of a row's columns; ``result`` also sets the thumbnail. Returns whether a
    row changed. ``only_unfinished``: leave a row alone once it is final (a poll and a
    webhook, or two deliveries of one webhook, may race to finish it: the first one wins)."""
    unknown = set(fields) - set(_COLUMNS)
    if unknown:
        raise TypeError(f"unknown history columns: {sorted(unknown)}")
    if "result" in fields and "thumbnail_url" not in fields:
        fields["thumbnail_url"] = _thumbnail(fields["result"])
    if fields.get("status") in TERMINAL and "finished" not in fields:
        fields["finished"] = time.time()
    values = []
    for column, value in fields.items():
        values.append(json.dumps(value) if column in _JSON_COLUMNS and value is not None else value)
    assignments = ", ".join(f"{column} = ?" for column in fields)
    where = "request_id = ?"
    if only_unfinished:
        where += f" AND status NOT IN ({', '.join('?' * len(TERMINAL))})"
    db = db or get_db()
    changed = db.execute(
        f"UPDATE request SET {assignments}, updated = ? WHERE {where}",
        (*values, time.time(), request_id, *(TERMINAL if only_unfinished else ())),
    ).rowcount
    db.commit()
    return changed > 0


def delete(request_id, db=None):
    """Forget a request (the backend's copy is untouched). True if a row was deleted."""
    db = db or get_db()
    deleted = db.execute("DELETE FROM request WHERE request_id = ?", (request_id,)).rowcount
    db.commit()
    return bool(deleted)


def page(number, per_page, db=None, owner=None):
    """Rows of page ``number`` (1-based), newest first, and the total number of rows;
    only ``owner``'s when given."""
    db = db or get_db()
    where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
    total = db.execute(f"SELECT COUNT(*) FROM request {where}", args).fetchone()[0]
    # Past the last page (or past SQLite's 64-bit OFFSET): nothing, not an OverflowError.
    if number > total // max(per_page, 1) + 1:
        return [], total
    rows = db.execute(
        f"SELECT * FROM request {where} ORDER BY created DESC,"
        f" {history_sql.TIEBREAK[getattr(db, 'dialect', 'sqlite')]} DESC LIMIT ? OFFSET ?",
        (*args, per_page, (max(number, 1) - 1) * per_page),
    ).fetchall()
    return [_decode(row) for row in rows], total


def unfinished(db=None):
    """Rows still queued or running, oldest first."""
    db = db or get_db()
    rows = db.execute(
        "SELECT * FROM request WHERE status IN (?, ?) ORDER BY created", PENDING
    ).fetchall()
    return [_decode(row) for row in rows]


def pending_count(db=None):
    """How many rows are still queued or running."""
    db = db or get_db()
    return db.execute("SELECT COUNT(*) FROM request WHERE status IN (?, ?)",
                      PENDING).fetchone()[0]


def delete_finished_before(cutoff, limit, db=None):
    """Delete at most ``limit`` finished rows (``COMPLETED``, ``FAILED``, ``CANCELLED``) that
    ended before ``cutoff`` (a Unix time), in one short transaction; returns how many.
    Queued and running rows are never deleted, however old."""
    db = db or get_db()
    with _immediate(db):
        return db.execute(
            "DELETE FROM request WHERE request_id IN (SELECT request_id FROM request"
            " WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
            " AND COALESCE(finished, updated) < ? LIMIT ?)", (cutoff, limit)).rowcount


def delete_expired_tokens(db=None, now=None):
    """Forget held webhooks and form submission tokens past their own expiry
    (:data:`HELD_WEBHOOK_SECONDS`, :data:`SUBMISSION_SECONDS`); returns how many."""
    db = db or get_db()
    now = time.time() if now is None else now
    with _immediate(db):
        held = db.execute("DELETE FROM held_webhook WHERE received < ?",
                          (now - HELD_WEBHOOK_SECONDS,)).rowcount
        tokens = db.execute("DELETE FROM submission WHERE created < ?",
                            (now - SUBMISSION_SECONDS,)).rowcount
    return held + tokens


def init_app(app):
    """Create the history tables and register the connection teardown."""
    init_db(app)
    app.teardown_appcontext(close_db)
