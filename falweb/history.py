"""Request history: one SQLite row per request, in the instance folder (flaskr's db shape).

A row is written when a submit is accepted, before the user is answered, and is kept up to
date by the request page's status polls (and by verified webhooks). It stores the exact
validated input, so a request can be re-run, and fal's result as JSON text, so seeds larger
than 2**63 survive unchanged.

Statuses: fal's ``IN_QUEUE``, ``IN_PROGRESS`` and ``COMPLETED``, plus two terminal ones of
falweb's own: ``FAILED`` (fal reported an error) and ``CANCELLED``.
"""

import json
import logging
import os
import sqlite3
import threading
import time

import click
from flask import current_app
from flask import g

log = logging.getLogger(__name__)

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
    synthetic INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS request_created ON request (created DESC);
"""

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
    db.execute("PRAGMA journal_mode=WAL")
    return db


def get_db():
    """The request's connection, opened on first use and closed at teardown."""
    if "history_db" not in g:
        g.history_db = connect(db_path())
    return g.history_db


def close_db(e=None):
    db = g.pop("history_db", None)
    if db is not None:
        db.close()


def init_db(app=None):
    """Create the tables if they do not exist (safe to call on every start)."""
    db = connect(db_path(app))
    try:
        db.executescript(SCHEMA)
        # Columns added after a history file was first created.
        columns = {row[1] for row in db.execute("PRAGMA table_info(request)")}
        if "synthetic" not in columns:
            db.execute("ALTER TABLE request ADD COLUMN synthetic INTEGER NOT NULL DEFAULT 0")
            db.execute("UPDATE request SET synthetic = 1 WHERE backend = 'local'")
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
    images = (result or {}).get("images") or []
    if not images or not isinstance(images[0], dict):
        return None
    url = images[0].get("url")
    if not isinstance(url, str) or len(url) > _MAX_INLINE_THUMBNAIL:
        return None
    return url


def add(request_id, endpoint_id, input, backend, status="IN_QUEUE", db=None, synthetic=False):
    """Record a newly submitted request; a repeated id (a webhook came first) is kept.

    ``synthetic``: its images will be the preview engine's drawings, not model outputs.
    """
    db = db or get_db()
    now = time.time()
    prompt = input.get("prompt") if isinstance(input.get("prompt"), str) else None
    db.execute(
        "INSERT INTO request (request_id, endpoint_id, backend, input, status, prompt,"
        " created, updated, synthetic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (request_id) DO UPDATE SET endpoint_id = excluded.endpoint_id,"
        " input = excluded.input, prompt = excluded.prompt",
        (request_id, endpoint_id, backend, json.dumps(input), status, prompt, now, now,
         int(bool(synthetic))),
    )
    db.commit()


def get(request_id, db=None):
    """The row of ``request_id`` as a dict (JSON columns decoded), or None."""
    db = db or get_db()
    row = db.execute("SELECT * FROM request WHERE request_id = ?", (request_id,)).fetchone()
    return _decode(row)


def update(request_id, db=None, **fields):
    """Change some of a row's columns; ``result`` also sets the thumbnail."""
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
    db = db or get_db()
    db.execute(
        f"UPDATE request SET {assignments}, updated = ? WHERE request_id = ?",
        (*values, time.time(), request_id),
    )
    db.commit()


def delete(request_id, db=None):
    """Forget a request (the backend's copy is untouched). True if a row was deleted."""
    db = db or get_db()
    deleted = db.execute("DELETE FROM request WHERE request_id = ?", (request_id,)).rowcount
    db.commit()
    return bool(deleted)


def page(number, per_page, db=None):
    """Rows of page ``number`` (1-based), newest first, and the total number of rows."""
    db = db or get_db()
    total = db.execute("SELECT COUNT(*) FROM request").fetchone()[0]
    rows = db.execute(
        "SELECT * FROM request ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
        (per_page, (max(number, 1) - 1) * per_page),
    ).fetchall()
    return [_decode(row) for row in rows], total


def unfinished(db=None):
    """Rows still queued or running, oldest first."""
    db = db or get_db()
    rows = db.execute(
        "SELECT * FROM request WHERE status IN (?, ?) ORDER BY created", PENDING
    ).fetchall()
    return [_decode(row) for row in rows]


def refresh(client, row, db=None):
    """Ask the backend about an unfinished row and store what it says; returns the new row.

    ``COMPLETED`` fetches the result (or records fal's error as ``FAILED``, or ``CANCELLED``
    when a cancel was asked for). Errors reaching the backend propagate to the caller; a 404
    for the request ends it as ``FAILED``.
    """
    from falweb.client import errors

    request_id, endpoint_id = row["request_id"], row["endpoint_id"]
    try:
        status = client.status(endpoint_id, request_id, logs=True)
    except errors.ApiError as exc:
        if exc.status != 404:
            raise
        update(
            request_id,
            db=db,
            status="CANCELLED" if row["cancel_requested"] else "FAILED",
            error=error_of(exc),
        )
        return get(request_id, db=db)
    logs = list(getattr(status, "logs", None) or []) or row["logs"]
    # Anything but fal's two pending states is final, so a status fal might add (FAILED,
    # CANCELLED) can never make the page poll forever.
    if status.status in PENDING:
        update(
            request_id,
            db=db,
            status=status.status,
            queue_position=getattr(status, "queue_position", None),
            logs=logs,
        )
        return get(request_id, db=db)
    failed = getattr(status, "error", None)
    if failed:
        error_type = getattr(status, "error_type", None)
        cancelled = row["cancel_requested"] or error_type == CANCELLED_ERROR_TYPE
        update(
            request_id,
            db=db,
            status="CANCELLED" if cancelled else "FAILED",
            logs=logs,
            error={"detail": failed, "error_type": error_type},
        )
        return get(request_id, db=db)
    try:
        result = client.result(endpoint_id, request_id)
    except errors.ApiError as exc:
        update(
            request_id,
            db=db,
            status="CANCELLED" if row["cancel_requested"] else "FAILED",
            logs=logs,
            error=error_of(exc),
        )
        return get(request_id, db=db)
    update(
        request_id, db=db, status="COMPLETED", queue_position=None, logs=logs, result=dict(result)
    )
    return get(request_id, db=db)


def error_of(exc):
    """A JSON-able description of an upstream error: fal's ``detail`` when it sent one."""
    body = getattr(exc, "body", None)
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None:
        detail = body if isinstance(body, str) and body else str(exc)
    return {"status": getattr(exc, "status", None), "detail": detail}


def reconcile(app, hosts=None):
    """Poll every unfinished row once and store the answers (best effort, logs failures).

    Rows left running when the app stopped are settled this way when it starts again.
    Returns the number of rows that were checked.
    """
    from falweb import backend

    with app.app_context():
        client = backend.client(app, on=hosts)
        db = connect(db_path(app))
        checked = 0
        try:
            for row in unfinished(db=db):
                try:
                    refresh(client, row, db=db)
                except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
                    # One line, no traceback: an unreachable backend is expected here.
                    log.warning("could not reconcile request %s: %s", row["request_id"], exc)
                checked += 1
        finally:
            db.close()
            client.close()
        return checked


def _reconcile_once(app):
    # The embedded runtime's address is only known once a request has arrived, so the
    # first request starts reconciliation in the background instead of startup blocking on it.
    state = app.extensions["falweb_history"]
    if state["reconcile_started"] or not app.config["FALWEB_HISTORY_RECONCILE"]:
        return
    with state["lock"]:
        if state["reconcile_started"]:
            return
        state["reconcile_started"] = True
    db = connect(db_path(app))
    try:
        pending = db.execute(
            "SELECT COUNT(*) FROM request WHERE status IN (?, ?)", PENDING
        ).fetchone()[0]
    finally:
        db.close()
    if not pending:
        return
    from falweb import backend

    hosts = backend.hosts(app)
    threading.Thread(
        target=reconcile, args=(app, hosts), name="history-reconcile", daemon=True
    ).start()


@click.command("history-reconcile")
def reconcile_command():
    """Poll the backend for every unfinished request in the history."""
    count = reconcile(current_app._get_current_object())
    click.echo(f"checked {count} unfinished request(s)")


def init_app(app):
    """Create the history tables and register the connection teardown and reconciliation."""
    app.extensions["falweb_history"] = {"reconcile_started": False, "lock": threading.Lock()}
    init_db(app)
    app.teardown_appcontext(close_db)
    app.cli.add_command(reconcile_command)
    app.before_request(lambda: _reconcile_once(current_app._get_current_object()))
