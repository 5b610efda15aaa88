"""Keeping history rows in step with the backend: status polls, webhooks, reconciliation.

:mod:`falweb.history` stores; this module asks the backend and decides what a row becomes.
One rule, :func:`finish`, turns the end of a request into a row's final state, whether a
status poll or a webhook brought the news:

- a result and no error: ``COMPLETED``;
- an error: ``CANCELLED`` when the user asked to cancel it or fal says it was cancelled
  (``error_type`` ``request_cancelled``), else ``FAILED``.

A row is finished once: the first poll or webhook delivery to finish it wins, and later
ones (fal retries deliveries; a sender killed mid-delivery sends again) change nothing.

A webhook carries no logs and no ``error_type``. A successful one finishes the row at once
and only then asks the backend for the logs (one GET, the slow part), so a delivery is on
record before anything can make it time out. A failed one asks first, for the
``error_type`` that tells a cancelled request from a failed one; when that GET fails, the
webhook's own payload still finishes the row.
"""

import collections
import json
import logging
import os
import threading
import time
import weakref

import click
from flask import current_app
from flask.cli import with_appcontext

from falweb import backend
from falweb import history
from falweb.client import errors

log = logging.getLogger(__name__)

# fal's error_type on a COMPLETED status when the request was cancelled (also by another client).
CANCELLED_ERROR_TYPE = "request_cancelled"


def error_of(exc):
    """A JSON-able description of an upstream error: fal's ``detail`` when it sent one."""
    body = getattr(exc, "body", None)
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None:
        detail = body if isinstance(body, str) and body else str(exc)
    return {"status": getattr(exc, "status", None), "detail": detail}


def finish(row, *, result=None, error=None, error_type=None, logs=None, db=None):
    """Store the end of ``row``'s request (see the module docstring); returns the new row.

    ``error``: a dict (``{"detail", ...}``) or text; ``logs``: the complete logs when known.
    """
    finish_once(row, result=result, error=error, error_type=error_type, logs=logs, db=db)
    return history.get(row["request_id"], db=db)


def finish_once(row, *, result=None, error=None, error_type=None, logs=None, db=None):
    """:func:`finish` without reading the row back; returns whether this call finished it
    (False when another poll or delivery finished it first)."""
    request_id = row["request_id"]
    fields = {"queue_position": None}
    if logs:
        fields["logs"] = list(logs)
    if error is None and result is not None:
        return history.update(request_id, db=db, only_unfinished=True, status="COMPLETED",
                              result=dict(result), **fields)
    else:
        if not isinstance(error, dict):
            error = {"detail": "The request ended without a result." if error is None
                     else error}
        if error_type and "error_type" not in error:
            error = {**error, "error_type": error_type}
        cancelled = row["cancel_requested"] or error.get("error_type") == CANCELLED_ERROR_TYPE
        return history.update(request_id, db=db, only_unfinished=True,
                              status="CANCELLED" if cancelled else "FAILED", error=error,
                              **fields)


class RecentChecks:
    """When each request was last asked about, so that the pages' pollers of one request
    (every open tab polls every second) share one backend call per ``interval``."""

    def __init__(self, interval, size=10_000):
        self.interval = interval
        self.size = size
        self._seen = collections.OrderedDict()
        self._lock = threading.Lock()

    def due(self, request_id):
        """True when ``request_id`` was not checked within ``interval`` (and now counts as
        checked); False when a fresh answer is already in the history."""
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(request_id)
            if last is not None and now - last < self.interval:
                return False
            self._seen[request_id] = now
            self._seen.move_to_end(request_id)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True

    def forget(self, request_id):
        with self._lock:
            self._seen.pop(request_id, None)


def refresh(client, row, db=None):
    """Ask the backend about an unfinished row and store what it says; returns the new row.

    ``COMPLETED`` fetches the result, or records fal's error, through :func:`finish`.
    Errors reaching the backend propagate to the caller; a 404 for the request ends it as
    ``FAILED`` (or ``CANCELLED`` when a cancel was asked for).
    """
    try:
        status = client.status(row["endpoint_id"], row["request_id"], logs=True)
    except errors.ApiError as exc:
        if exc.status != 404:
            raise
        return finish(row, error=error_of(exc), db=db)
    return apply_status(client, row, status, db=db)


def apply_status(client, row, status, db=None):
    """Store what ``status`` (a :class:`~falweb.client.status.QueueStatus` with the logs
    so far) says of ``row``'s request; returns the new row. The one path of status polls
    and of the request page's event stream: a pending status updates the row (unless it is
    final already), a final one fetches the result and finishes the row once."""
    request_id, endpoint_id = row["request_id"], row["endpoint_id"]
    logs = list(status.logs) or row["logs"]
    # Anything but fal's two pending states is final, so a status fal might add (FAILED,
    # CANCELLED) can never make the page poll forever.
    if status.status in history.PENDING:
        if (status.status, status.queue_position, len(logs)) == (
                row["status"], row["queue_position"], len(row["logs"])):
            return row  # nothing new: no write (every open page polls every second)
        # Unless a webhook finished the row meanwhile: a pending answer must not undo that.
        history.update(request_id, db=db, only_unfinished=True, status=status.status,
                       queue_position=status.queue_position, logs=logs)
        return history.get(request_id, db=db)
    if status.error:
        return finish(row, error={"detail": status.error}, error_type=status.error_type,
                      logs=logs, db=db)
    try:
        result = client.result(endpoint_id, request_id)
    except errors.ApiError as exc:
        return finish(row, error=error_of(exc), logs=logs, db=db)
    return finish(row, result=result, logs=logs, db=db)


def parse_webhook(body):
    """fal's webhook JSON as a dict with ``status``; ``ValueError`` when it is not that."""
    try:
        delivery = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("expected fal's webhook JSON") from None
    if not isinstance(delivery, dict) or not isinstance(delivery.get("status"), str):
        raise ValueError("expected fal's webhook JSON with a status")
    return delivery


def apply_webhook(client, row, delivery, db=None):
    """Finish ``row`` from a verified webhook ``delivery`` (a dict); returns whether the row
    changed. A row already final is left alone: fal retries deliveries."""
    if row["status"] in history.TERMINAL:
        return False
    payload = delivery.get("payload")
    if delivery["status"] == "OK" and isinstance(payload, dict):
        if not finish_once(row, result=payload, db=db):
            return False
        status = _status_with_logs(client, row)
        if status is not None and status.logs:
            history.update(row["request_id"], db=db, logs=list(status.logs))
        return True
    status = _status_with_logs(client, row)
    error = payload if isinstance(payload, dict) and payload else {
        "detail": delivery.get("payload_error") or delivery.get("error")}
    return finish_once(row, error=error, logs=status.logs if status is not None else None,
                       error_type=status.error_type if status is not None else None, db=db)


def _status_with_logs(client, row):
    try:
        return client.status(row["endpoint_id"], row["request_id"], logs=True)
    except errors.FalError as exc:
        log.info("webhook for %s: status with logs unavailable (%s)", row["request_id"],
                 type(exc).__name__)
        return None


def add(client, request_id, endpoint_id, input, **row):
    """:func:`falweb.history.add` a submitted request, then apply the webhook that reached
    us before the row existed, if one did. ``row``: ``backend``, ``status``, ``synthetic``."""
    held = history.add(request_id, endpoint_id, input, **row)
    if held is not None:
        apply_webhook(client, history.get(request_id), parse_webhook(held))


def recent_checks(app=None):
    """The app's :class:`RecentChecks`."""
    return (app or current_app).extensions["falweb_history_sync"]["checks"]


def reconcile(app, hosts=None):
    """Poll every unfinished row once and store the answers (best effort, logs failures).

    Rows left running when the app stopped are settled this way when it starts again.
    Returns the number of rows that were checked.
    """
    with app.app_context():
        client = backend.client(app, on=hosts)
        db = history.open_db(app)
        checked = 0
        try:
            for row in history.unfinished(db=db):
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
    state = app.extensions["falweb_history_sync"]
    if state["reconcile_started"] or not app.config["FALWEB_HISTORY_RECONCILE"]:
        return
    with state["lock"]:
        if state["reconcile_started"]:
            return
        state["reconcile_started"] = True
    db = history.open_db(app)
    try:
        pending = history.pending_count(db=db)
    finally:
        db.close()
    if not pending:
        return
    threading.Thread(target=reconcile, args=(app, backend.hosts(app)),
                     name="history-reconcile", daemon=True).start()


# -- retention --------------------------------------------------------------------------------

# Rows deleted per transaction, and the pause between two, so that a large cleanup never
# holds the write lock long enough for a submit to notice.
CLEANUP_BATCH = 200
CLEANUP_PAUSE = 0.05


def clean_up(app, now=None):
    """Delete the history rows finished more than ``FALWEB_HISTORY_RETENTION_DAYS`` ago (0:
    none) in batches of :data:`CLEANUP_BATCH`, and the held webhooks and submission tokens
    past their own expiry; with the users store, the proxy requests' owners past the same
    retention and the login failures that no longer count. Returns what was deleted:
    ``{"requests": n, "tokens": n}`` (and ``"proxy_requests"``, ``"login_failures"``)."""
    now = time.time() if now is None else now
    days = app.config["FALWEB_HISTORY_RETENTION_DAYS"]
    cutoff = now - days * 24 * 3600 if days and days > 0 else None
    deleted = {"requests": 0, "tokens": 0}
    users = app.extensions.get("falweb_auth", {}).get("users")
    if users is not None:
        deleted.update(users.clean_up(proxy_requests_before=cutoff, now=now))
    db = history.open_db(app)
    try:
        if cutoff is not None:
            while True:
                count = history.delete_finished_before(cutoff, CLEANUP_BATCH, db=db)
                deleted["requests"] += count
                if count < CLEANUP_BATCH:
                    break
                time.sleep(CLEANUP_PAUSE)
        deleted["tokens"] = history.delete_expired_tokens(db=db, now=now)
    finally:
        db.close()
    if deleted["requests"]:
        log.info("history cleanup: deleted %d request(s) finished more than %s day(s) ago",
                 deleted["requests"], days)
    return deleted


class _Cleaner:
    """One background thread per process that cleans up every app's history, each at its
    ``FALWEB_HISTORY_CLEANUP_MINUTES``, once soon after the app starts. Apps are held by weak
    reference: an app that is gone drops out."""

    def __init__(self):
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.apps = []  # [weakref to an app, monotonic time of its next cleanup]
        self.thread = None
        self.pid = None

    def add(self, app):
        with self.lock:
            self.apps.append([weakref.ref(app), time.monotonic()])
        self.ensure_running()
        self.wake.set()

    def ensure_running(self):
        # A thread started before gunicorn forked does not exist in the worker.
        if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
            return
        with self.lock:
            if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return
            self.pid = os.getpid()
            self.thread = threading.Thread(target=self.run, name="history-cleanup",
                                           daemon=True)
            self.thread.start()

    def due(self):
        """The apps whose cleanup is due, and the seconds until the next one."""
        now = time.monotonic()
        with self.lock:
            self.apps = [entry for entry in self.apps if entry[0]() is not None]
            due = [entry for entry in self.apps if entry[1] <= now]
            later = [entry[1] - now for entry in self.apps if entry[1] > now]
        return due, min(later, default=None)

    def run(self):
        while True:
            due, wait = self.due()
            for entry in due:
                app = entry[0]()
                if app is None:
                    continue
                minutes = app.config["FALWEB_HISTORY_CLEANUP_MINUTES"]
                try:
                    clean_up(app)
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("history cleanup failed: %s", exc)
                entry[1] = time.monotonic() + minutes * 60
                del app
            if due:
                continue  # the cleanups took time: look again before sleeping
            self.wake.wait(wait)
            self.wake.clear()


_cleaner = _Cleaner()


@click.command("history-cleanup")
@with_appcontext
def cleanup_command():
    """Delete history rows past FALWEB_HISTORY_RETENTION_DAYS, and expired tokens."""
    deleted = clean_up(current_app._get_current_object())
    click.echo(f"deleted {deleted['requests']} request(s) and {deleted['tokens']} "
               f"expired token(s)")


@click.command("history-reconcile")
def reconcile_command():
    """Poll the backend for every unfinished request in the history."""
    count = reconcile(current_app._get_current_object())
    click.echo(f"checked {count} unfinished request(s)")


def init_app(app):
    """Reconcile unfinished rows after the first request; clean up the history in the
    background (at start, then every ``FALWEB_HISTORY_CLEANUP_MINUTES``); the
    ``history-reconcile`` and ``history-cleanup`` commands."""
    app.extensions["falweb_history_sync"] = {
        "reconcile_started": False, "lock": threading.Lock(),
        "checks": RecentChecks(float(app.config["FALWEB_POLL_INTERVAL"]))}
    app.cli.add_command(reconcile_command)
    app.cli.add_command(cleanup_command)
    app.before_request(lambda: _reconcile_once(current_app._get_current_object()))
    if app.config["FALWEB_HISTORY_CLEANUP_MINUTES"] > 0:
        _cleaner.add(app)
        app.before_request(_cleaner.ensure_running)
