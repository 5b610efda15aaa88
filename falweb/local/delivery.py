"""Webhook delivery, as fal delivers it: signed, retried, durable.

On completion a job with ``fal_webhook`` gets a row in ``deliveries``; a delivery thread
POSTs it (JSON, keys sorted) with ``X-Fal-Webhook-*`` headers and an Ed25519 signature over
``request_id\\nuser_id\\ntimestamp\\nsha256(body)``, retrying with backoff up to
``MAX_ATTEMPTS`` times. Rows survive a restart, so a delivery is not lost with the process.
"""

import json
import logging
import threading
import time

import requests

from falweb.webhook_signature import signature_headers

USER_ID = "falweb-local"
MAX_ATTEMPTS = 10
TIMEOUT = 15

log = logging.getLogger("falweb.local.delivery")


def webhook_body(job):
    """The JSON body fal POSTs for a finished job (``status`` OK or ERROR)."""
    ok = job.error is None and (job.result_status or 200) < 400
    payload = {
        "request_id": job.request_id,
        "gateway_request_id": job.request_id,
        "status": "OK" if ok else "ERROR",
        "payload": job.result,
        "error": None if ok else f"Invalid status code: {job.result_status}",
    }
    return json.dumps(payload, sort_keys=True).encode()


class Deliveries:
    def __init__(self, db, key, session=None):
        self.db = db
        self.key = key
        self.session = session or requests.Session()
        self._wake = threading.Event()

    def enqueue(self, job):
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO deliveries (request_id, webhook_url, body, next_at)"
                " VALUES (?, ?, ?, ?)",
                (job.request_id, job.webhook_url, webhook_body(job), time.time()),
            )
        self._wake.set()

    def headers(self, request_id, body, timestamp=None):
        return {
            "Content-Type": "application/json",
            "User-Agent": "falweb-local-webhook",
            **signature_headers(request_id, USER_ID, body, self.key.sign, timestamp),
        }

    def _due(self):
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM deliveries WHERE delivered_at IS NULL AND attempts < ?"
                " AND next_at <= ? ORDER BY next_at LIMIT 1",
                (MAX_ATTEMPTS, time.time()),
            ).fetchone()
            if row is None:
                return None
            # Claim it for a while so another process does not send it at the same time.
            conn.execute("UPDATE deliveries SET next_at = ? WHERE request_id = ?",
                         (time.time() + TIMEOUT + 5, row["request_id"]))
            return row

    def deliver_once(self):
        """Send one due delivery; False when none was due."""
        row = self._due()
        if row is None:
            return False
        body = bytes(row["body"])
        error = None
        try:
            answer = self.session.post(row["webhook_url"], data=body,
                                       headers=self.headers(row["request_id"], body),
                                       timeout=TIMEOUT, allow_redirects=False)
            if not 200 <= answer.status_code < 300:
                error = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            error = type(exc).__name__
        attempts = row["attempts"] + 1
        with self.db.transaction() as conn:
            if error is None:
                conn.execute("UPDATE deliveries SET attempts = ?, delivered_at = ?,"
                             " last_error = NULL WHERE request_id = ?",
                             (attempts, time.time(), row["request_id"]))
            else:
                log.info("webhook for %s failed (%s), attempt %d", row["request_id"], error,
                         attempts)
                conn.execute("UPDATE deliveries SET attempts = ?, next_at = ?, last_error = ?"
                             " WHERE request_id = ?",
                             (attempts, time.time() + min(2 ** attempts, 900), error,
                              row["request_id"]))
        return True

    def run(self, stop):
        while not stop.is_set():
            try:
                if self.deliver_once():
                    continue
            except Exception:  # keep delivering others; the row stays due
                log.exception("webhook delivery failed")
            self._wake.wait(0.5)
            self._wake.clear()
