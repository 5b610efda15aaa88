"""History retention: the background cleanup deletes finished requests past
FALWEB_HISTORY_RETENTION_DAYS, and expired held webhooks and submission tokens, in small
batches, while the app keeps taking submits."""

import re
import sqlite3
import threading
import time
import uuid

import requests

from falweb import create_app
from falweb import history
from falweb import history_sync
from falweb.testing import serve_app
from falweb.testing import wait_until

DAY = 24 * 3600


def config(tmp_path, **extra):
    return {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
            "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0, **extra}


def insert_rows(app, rows):
    """Write history rows as they would be after months of use: ``rows`` are
    ``(status, created, finished)``; returns their request ids, in order."""
    ids = []
    db = history.connect(history.db_path(app))
    try:
        with db:  # one transaction: the cleanup sees all of them or none
            for status, created, finished in rows:
                request_id = str(uuid.uuid4())
                db.execute(
                    "INSERT INTO request (request_id, endpoint_id, backend, input, status,"
                    " created, updated, finished, owner) VALUES (?, 'fal-ai/fast-sdxl',"
                    " 'local', '{\"prompt\": \"old\"}', ?, ?, ?, ?, 'local')",
                    (request_id, status, created, finished or created, finished))
                ids.append(request_id)
    finally:
        db.close()
    return ids


def insert_tokens(app, now):
    """Two held webhooks and two submission tokens, one of each past its expiry."""
    db = history.connect(history.db_path(app))
    try:
        with db:
            for name, age in (("old", 2 * DAY), ("new", 60)):
                db.execute("INSERT INTO held_webhook (request_id, body, received)"
                           " VALUES (?, x'7b7d', ?)", (f"held-{name}", now - age))
                db.execute("INSERT INTO submission (token, request_id, created)"
                           " VALUES (?, NULL, ?)", (f"token-{name}-0123456789", now - age))
    finally:
        db.close()


def table(app, sql):
    db = history.connect(history.db_path(app))
    try:
        return [tuple(row) for row in db.execute(sql)]
    finally:
        db.close()


def test_cleanup_deletes_exactly_the_expired_rows_while_submits_continue(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(history_sync, "CLEANUP_BATCH", 40)
    batches = []
    delete = history.delete_finished_before

    def counted(*args, **kwargs):
        deleted = delete(*args, **kwargs)
        batches.append(deleted)
        return deleted

    monkeypatch.setattr(history, "delete_finished_before", counted)
    # A cleanup every 0.3 s, so that several happen while this test submits.
    with serve_app(config(tmp_path, FALWEB_HISTORY_CLEANUP_MINUTES=0.005)) as server:
        app, base = server.app, server.url
        submitted, stop, failures = [], threading.Event(), []

        def submit_forever():
            session = requests.Session()
            while not stop.is_set() and len(submitted) < 200:
                form = session.get(base + "/models/fal-ai/fast-sdxl", timeout=10).text
                answer = session.post(base + "/models/fal-ai/fast-sdxl", timeout=30,
                                      allow_redirects=False, data={
                                          "prompt": f"new {len(submitted)}",
                                          "num_inference_steps": "1",
                                          "csrf_token": re.search(
                                              r'name="csrf_token" value="([^"]+)"', form)[1]})
                if answer.status_code != 303:
                    failures.append(answer.status_code)
                    return
                submitted.append(answer.headers["Location"].rsplit("/", 1)[1])
            session.close()

        submitter = threading.Thread(target=submit_forever)
        submitter.start()
        try:
            wait_until(lambda: len(submitted) >= 2 or failures, timeout=30,
                       message="the first submits")
            now = time.time()
            expired = insert_rows(app, [(status, now - 120 * DAY, now - 100 * DAY)
                                        for status in ("COMPLETED", "FAILED", "CANCELLED")
                                        for _ in range(50)])
            fresh = insert_rows(app, [("COMPLETED", now - 30 * DAY, now - 2 * DAY)
                                      for _ in range(60)]
                                + [("FAILED", now - 89 * DAY, now - 89 * DAY)])
            # Old, but never finished: the backend may still answer for them.
            unfinished = insert_rows(app, [("IN_QUEUE", now - 200 * DAY, None),
                                           ("IN_PROGRESS", now - 150 * DAY, None)])
            insert_tokens(app, now)
            wait_until(lambda: table(app, f"SELECT COUNT(*) FROM request"
                                          f" WHERE finished < {now - 95 * DAY}") == [(0,)],
                       timeout=60, message="the expired rows to be deleted")
            during = len(submitted)
            wait_until(lambda: len(submitted) >= during + 3 or failures, timeout=30,
                       message="submits after the cleanup")
        finally:
            stop.set()
            submitter.join(60)
        assert not failures, failures

        remaining = {row[0] for row in table(app, "SELECT request_id FROM request")}
        assert not remaining & set(expired)
        assert remaining == set(fresh) | set(unfinished) | set(submitted)
        assert len(expired) == 150 and len(submitted) >= 5
        assert max(batches) <= 40 and sum(batches) == 150  # small batches, each one short
        assert table(app, "SELECT request_id FROM held_webhook") == [("held-new",)]
        assert table(app, "SELECT token FROM submission WHERE token LIKE 'token-%'") == [
            ("token-new-0123456789",)]


def test_retention_zero_keeps_every_request_but_still_drops_expired_tokens(tmp_path):
    app = create_app(config(tmp_path, FALWEB_HISTORY_RETENTION_DAYS=0,
                            FALWEB_HISTORY_CLEANUP_MINUTES=0))
    now = time.time()
    kept = insert_rows(app, [("COMPLETED", now - 1000 * DAY, now - 999 * DAY)])
    insert_tokens(app, now)
    assert history_sync.clean_up(app) == {"requests": 0, "tokens": 2, "proxy_requests": 0,
                                          "login_failures": 0}
    assert table(app, "SELECT request_id FROM request") == [(kept[0],)]
    assert table(app, "SELECT request_id FROM held_webhook") == [("held-new",)]


def test_the_cleanup_command(tmp_path):
    app = create_app(config(tmp_path, FALWEB_HISTORY_RETENTION_DAYS=30,
                            FALWEB_HISTORY_CLEANUP_MINUTES=0))
    now = time.time()
    insert_rows(app, [("COMPLETED", now - 40 * DAY, now - 40 * DAY)] * 3
                + [("COMPLETED", now - 20 * DAY, now - 20 * DAY)])
    result = app.test_cli_runner().invoke(args=["history-cleanup"])
    assert result.exit_code == 0 and "deleted 3 request(s)" in result.output
    assert len(table(app, "SELECT request_id FROM request")) == 1


def test_proxy_request_owners_and_spent_login_failures_are_forgotten(tmp_path):
    # Both tables grew for ever: every request made through the proxy and every failed
    # login left a row. Owners go with the history's retention; failures once they no
    # longer count (their window passed) nor block.
    from falweb import auth
    from falweb.users import FAILURE_WINDOW

    app = create_app(config(tmp_path, FALWEB_HISTORY_RETENTION_DAYS=30,
                            FALWEB_HISTORY_CLEANUP_MINUTES=0))
    users = auth.users(app)
    now = time.time()
    users.own_proxy_request("old", "ann")
    users.own_proxy_request("new", "ann")
    users.failed(["ip:10.0.0.1"])
    for _ in range(8):
        users.failed(["user:bob"])  # blocked for a while yet
    with sqlite3.connect(users.path) as db:
        db.execute("UPDATE proxy_request SET created = ? WHERE request_id = 'old'",
                   (now - 31 * DAY,))
        db.execute("UPDATE login_failure SET first = ?", (now - FAILURE_WINDOW - 1,))
    deleted = history_sync.clean_up(app, now=now)
    assert (deleted["proxy_requests"], deleted["login_failures"]) == (1, 1)
    assert users.proxy_request_owner("old") is None
    assert users.proxy_request_owner("new") == "ann"
    assert users.blocked_for(["user:bob"]) > 0
