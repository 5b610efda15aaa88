"""Webhook delivery, as fal delivers it: signed, retried, durable.

On completion a job with ``fal_webhook`` gets a row in ``deliveries``; a delivery thread
POSTs it (JSON, keys sorted) with ``X-Fal-Webhook-*`` headers and an Ed25519 signature over
``request_id\\nuser_id\\ntimestamp\\nsha256(body)``, retrying with backoff up to
``MAX_ATTEMPTS`` times. Rows survive a restart, so a delivery is not lost with the process.

Any caller names the webhook URL, so deliveries reach public addresses only (the same rule
as input fetches, :mod:`falweb.local.netguard`): a URL whose host is, or resolves to, a
loopback, private or link-local address is refused at submit, and every delivery connects
through a resolve-once, check-every-address connection. URLs under the prefixes of
:class:`WebhookPolicy` (FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS, and what the embedding app adds
with ``Runtime.allow_webhook_prefix``) may be local: the job records at submit that its URL
was allowed, so whichever process delivers it honours the decision.
"""

import json
import logging
import threading
import time
from urllib.parse import unquote
from urllib.parse import urlsplit

import requests

from falweb.local import sql
from falweb.local.netguard import AddressRefused
from falweb.local.netguard import check_url
from falweb.local.netguard import public_session
from falweb.local.netguard import refusal
from falweb.webhook_signature import signature_headers

USER_ID = "falweb-local"
MAX_ATTEMPTS = 10
TIMEOUT = 15
#: Every RECOVER_INTERVAL seconds, jobs that completed RECOVER_GRACE seconds ago (up to
#: RECOVER_WINDOW) without a queued webhook get one (:meth:`Deliveries.recover`).
RECOVER_INTERVAL = 30.0
RECOVER_GRACE = 30.0
RECOVER_WINDOW = 24 * 3600.0

log = logging.getLogger("falweb.local.delivery")


class WebhookRefused(Exception):
    """A ``fal_webhook`` the runtime will not deliver to; the message says why."""


def _origin(parts):
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _clean_path(path):
    # Dot segments or encoded separators would let a URL leave its prefix's folder once a
    # client or server normalizes it: such URLs never match a prefix.
    decoded = unquote(path)
    if "\\" in decoded or "%2f" in path.lower() or any(
            segment in (".", "..") for segment in decoded.split("/")):
        return None
    return path or "/"


class WebhookPolicy:
    """Which webhook URLs may be delivered to: public ones, and those under ``prefixes``
    (which may be local). A prefix matches URLs of the same scheme, host and port whose
    path is the prefix's path or below it (by whole segments); URLs with credentials or
    dot segments never match."""

    def __init__(self, prefixes=()):
        self._prefixes = []
        self._lock = threading.Lock()
        for prefix in prefixes or ():
            self.allow(prefix)

    def allow(self, prefix):
        parts = urlsplit(prefix)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook prefix must be an http(s) URL, not {prefix!r}")
        entry = (_origin(parts), parts.path or "/")
        with self._lock:
            if entry not in self._prefixes:
                self._prefixes.append(entry)

    def allowed(self, url):
        """True when ``url`` is under one of the allowed prefixes."""
        try:
            parts = urlsplit(url)
            origin = _origin(parts)
        except ValueError:
            return False
        if parts.username is not None or parts.password is not None:
            return False
        path = _clean_path(parts.path)
        if path is None:
            return False
        with self._lock:
            prefixes = list(self._prefixes)
        for prefix_origin, prefix_path in prefixes:
            if origin != prefix_origin:
                continue
            if (path == prefix_path or path.startswith(prefix_path.rstrip("/") + "/")):
                return True
        return False

    def check(self, url):
        """True when ``url`` is allowed as local (deliver it as it is), False when it must be
        public (deliver through the public-only connection); :class:`WebhookRefused` when
        it is not an http(s) URL or names a non-public address."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise WebhookRefused("fal_webhook must be an http(s) URL")
        try:
            if not urlsplit(url).hostname:
                raise WebhookRefused("fal_webhook must be an http(s) URL with a host")
        except ValueError:
            raise WebhookRefused("fal_webhook is not a valid URL") from None
        if self.allowed(url):
            return True
        try:
            check_url(url)
        except AddressRefused as exc:
            raise WebhookRefused(f"fal_webhook must be a public URL: {exc}") from None
        return False


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
    """Durable deliveries. ``session`` sends to URLs that were allowed as local at submit;
    every other URL goes through ``public`` (public addresses only)."""

    def __init__(self, db, key, session=None, public=None, timeout=TIMEOUT):
        self.db = db
        self.key = key
        self.timeout = timeout
        self.session = session or requests.Session()
        self.public = public or public_session()
        self._wake = threading.Event()

    def enqueue(self, job):
        with self.db.transaction() as conn:
            conn.execute(
                sql.INSERT_DELIVERY[self.db.dialect],
                (job.request_id, job.webhook_url, webhook_body(job), time.time(),
                 int(bool(job.webhook_trusted))),
            )
        self._wake.set()

    def wake(self):
        """A delivery was queued (perhaps by another host): look now."""
        self._wake.set()

    def headers(self, request_id, body, timestamp=None):
        return {
            "Content-Type": "application/json",
            "User-Agent": "falweb-local-webhook",
            **signature_headers(request_id, USER_ID, body, self.key.sign, timestamp),
        }

    def _due(self):
        if self.db.dialect == "postgres":
            with self.db.transaction() as conn:
                return conn.execute(sql.POSTGRES_CLAIM_DELIVERY,
                                    (MAX_ATTEMPTS, time.time(),
                                     time.time() + self.timeout + 5)).fetchone()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM deliveries WHERE delivered_at IS NULL AND attempts < ?"
                " AND next_at <= ? ORDER BY next_at LIMIT 1",
                (MAX_ATTEMPTS, time.time()),
            ).fetchone()
            if row is None:
                return None
            # Claim it for a while so another process does not send it at the same time;
            # if this one dies mid-send, another sends it again once the claim runs out.
            conn.execute("UPDATE deliveries SET next_at = ? WHERE request_id = ?",
                         (time.time() + self.timeout + 5, row["request_id"]))
            return row

    def deliver_once(self):
        """Send one due delivery; False when none was due."""
        row = self._due()
        if row is None:
            return False
        body = bytes(row["body"])
        error = None
        attempts = row["attempts"] + 1
        session = self.session if row["trusted"] else self.public
        try:
            answer = session.post(row["webhook_url"], data=body,
                                  headers=self.headers(row["request_id"], body),
                                  timeout=self.timeout, allow_redirects=False)
            answer.close()
            if not 200 <= answer.status_code < 300:
                error = f"HTTP {answer.status_code}"
        except (requests.RequestException, AddressRefused) as exc:
            error = type(exc).__name__
            if refusal(exc) is not None:
                # It will not become public by retrying: give up at once.
                error = "refused: the URL resolves to a private or local address"
                attempts = MAX_ATTEMPTS
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

    def purge(self, cutoff, batch=200):
        """Delete up to ``batch`` deliveries done (delivered, or given up) before ``cutoff``
        whose job is gone; the jobs' own purge takes the rest. Returns how many."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM deliveries WHERE request_id IN (SELECT request_id FROM deliveries"
                " WHERE (delivered_at < ? OR (attempts >= ? AND next_at < ?)) AND NOT EXISTS"
                " (SELECT 1 FROM jobs WHERE jobs.request_id = deliveries.request_id) LIMIT ?)",
                (cutoff, MAX_ATTEMPTS, cutoff, batch))
            return cur.rowcount

    def close(self):
        self.session.close()
        self.public.close()

    def recover(self, now=None, grace=RECOVER_GRACE, window=RECOVER_WINDOW):
        """Queue the webhooks of jobs that completed without one: their worker died between
        completing the job and queueing its delivery (two transactions). Jobs finished
        ``grace`` to ``window`` seconds before ``now``; returns how many were queued."""
        from falweb.local.queue import Job

        now = time.time() if now is None else now
        rows = self.db.connect().execute(
            "SELECT jobs.* FROM jobs LEFT JOIN deliveries d ON d.request_id = jobs.request_id"
            " WHERE jobs.status = 'COMPLETED' AND jobs.webhook_url IS NOT NULL"
            " AND jobs.finished_at BETWEEN ? AND ? AND d.request_id IS NULL LIMIT 200",
            (now - window, now - grace)).fetchall()
        for row in rows:
            log.warning("webhook for %s was never queued (its worker stopped); queueing it",
                        row["request_id"])
            self.enqueue(Job.from_row(row))
        return len(rows)

    def run(self, stop):
        recovered_at = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - recovered_at > RECOVER_INTERVAL:
                    recovered_at = time.monotonic()
                    self.recover()
                if self.deliver_once():
                    continue
            except Exception:  # keep delivering others; the row stays due
                log.exception("webhook delivery failed")
            self._wake.wait(0.5)
            self._wake.clear()
