"""Signed webhook receiver: ``POST /webhooks/fal`` (DESIGN §8).

fal signs each delivery with Ed25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256(body)``
(hex signature in ``X-Fal-Webhook-Signature``), with public keys served as a JWKS. A verified
delivery finishes the request's history row, once: later deliveries of the same request (fal
retries) change nothing. :func:`verify_webhook` is usable on its own in any app::

    from falweb.webhooks import JWKSCache, verify_webhook
    keys = JWKSCache("https://rest.alpha.fal.ai/.well-known/jwks.json")
    verify_webhook(request.headers, request.get_data(), keys.get())   # raises WebhookError
"""

import base64
import hashlib
import json
import logging
import threading
import time

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request

from falweb import backend

FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
TOLERANCE_SECONDS = 300
JWKS_TTL_SECONDS = 24 * 3600

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("falweb.webhooks")


class WebhookError(Exception):
    """A delivery that cannot be trusted; the message says why (never key material)."""


def _b64url(value):
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def signed_message(request_id, user_id, timestamp, body):
    """The bytes fal signs for a delivery: ``request_id\nuser_id\ntimestamp\nsha256(body)``."""
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


def verify_webhook(headers, body, jwks, *, tolerance=TOLERANCE_SECONDS, now=None, user_id=None):
    """Check a delivery's signature against ``jwks``; returns its request id.

    Raises :class:`WebhookError` when a header is missing, the timestamp is outside
    ±``tolerance`` seconds, the user id is not ``user_id`` (when given), or no key verifies.
    """
    get = {k.lower(): v for k, v in headers.items()}.get
    request_id = get("x-fal-webhook-request-id")
    sender = get("x-fal-webhook-user-id")
    timestamp = get("x-fal-webhook-timestamp")
    signature = get("x-fal-webhook-signature")
    if not (request_id and sender and timestamp and signature):
        raise WebhookError("missing X-Fal-Webhook-* headers")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance:
        raise WebhookError("timestamp outside the allowed window")
    if user_id and sender != user_id:
        raise WebhookError("unexpected user id")
    try:
        signature_bytes = bytes.fromhex(signature)
    except ValueError:
        raise WebhookError("signature is not hex") from None
    message = signed_message(request_id, sender, timestamp, body)
    for key in jwks.get("keys", ()):
        if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        try:
            Ed25519PublicKey.from_public_bytes(_b64url(key["x"])).verify(
                signature_bytes, message)
            return request_id
        except (InvalidSignature, ValueError, KeyError, TypeError):
            continue
    raise WebhookError("no key verifies the signature")


class JWKSCache:
    """A JWKS fetched from ``url`` and kept ``ttl`` seconds (fal: cache up to 24 h).

    ``refresh()`` refetches, e.g. after a signature failed with the cached keys.
    """

    def __init__(self, url, ttl=JWKS_TTL_SECONDS, timeout=10, session=None):
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self.session = session or requests.Session()
        self._keys = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._keys is None or time.time() - self._fetched > self.ttl:
                self._fetch()
            return self._keys

    def refresh(self):
        with self._lock:
            self._fetch()
            return self._keys

    def _fetch(self):
        answer = self.session.get(self.url, timeout=self.timeout)
        answer.raise_for_status()
        self._keys = answer.json()
        self._fetched = time.time()


def init_app(app):
    app.extensions["falweb_webhooks"] = {"jwks": None, "lock": threading.Lock()}
    app.register_blueprint(bp)


def webhook_url():
    """Where the backend should deliver webhooks for this app's requests, or None.

    ``FALWEB_PUBLIC_URL`` when set (fal must be able to reach it); with the embedded local
    runtime, the app's own address; otherwise None: the pages' polls are the only source.
    """
    from flask import url_for

    path = url_for("webhooks.receive")
    public = current_app.config["FALWEB_PUBLIC_URL"]
    if public:
        return public.rstrip("/") + path
    if current_app.extensions["falweb"]["local_app"] is not None:
        own = backend.self_url()
        return own + path if own else None
    return None


def _jwks(refresh=False):
    """Keys that sign this backend's webhooks: the embedded runtime's, or fetched."""
    local_app = current_app.extensions["falweb"]["local_app"]
    if local_app is not None and not current_app.config["FALWEB_WEBHOOK_JWKS_URL"]:
        return local_app.extensions["falweb_local"].webhook_key.jwks()
    state = current_app.extensions["falweb_webhooks"]
    with state["lock"]:
        if state["jwks"] is None:
            url = current_app.config["FALWEB_WEBHOOK_JWKS_URL"]
            if not url:
                base = backend.local_base()
                url = f"{base}/rest/.well-known/jwks.json" if base else FAL_JWKS_URL
            state["jwks"] = JWKSCache(url, timeout=current_app.config["FALWEB_HTTP_TIMEOUT"])
    return state["jwks"].refresh() if refresh else state["jwks"].get()


def _verify(body):
    config = current_app.config
    kwargs = {"tolerance": config["FALWEB_WEBHOOK_TOLERANCE"],
              "user_id": config["FALWEB_WEBHOOK_USER_ID"] or None}
    try:
        return verify_webhook(request.headers, body, _jwks(), **kwargs)
    except WebhookError as first:
        if str(first) != "no key verifies the signature":
            raise
        # fal may have rotated its keys since we cached them: look once more.
        return verify_webhook(request.headers, body, _jwks(refresh=True), **kwargs)


@bp.post("/fal")
def receive():
    """Finish the request's history row from a verified delivery.

    200 ``{"ok": true}`` (also for a repeated or unknown request, so fal stops retrying);
    401 when the signature does not verify; 400 when the body is not fal's JSON; 502 when
    the signing keys cannot be fetched (fal retries later).
    """
    from falweb import history

    body = request.get_data(cache=True)  # the raw bytes: the signature covers them exactly
    try:
        request_id = _verify(body)
    except WebhookError as exc:
        log.warning("webhook refused: %s", exc)
        return jsonify({"error": "invalid signature", "detail": str(exc)}), 401
    except (requests.RequestException, ValueError) as exc:
        log.warning("webhook keys unavailable: %s", type(exc).__name__)
        return jsonify({"error": "signing keys unavailable"}), 502
    try:
        delivery = json.loads(body)
        status = delivery["status"]
    except (ValueError, KeyError, TypeError):
        return jsonify({"error": "invalid body", "detail": "expected fal's webhook JSON"}), 400
    if delivery.get("request_id") not in (None, request_id):
        return jsonify({"error": "invalid body", "detail": "request_id does not match"}), 400
    row = history.get(request_id)
    if row is None or row["status"] in history.TERMINAL:
        return jsonify({"ok": True, "changed": False})
    if status == "OK" and delivery.get("payload") is not None:
        history.update(request_id, status="COMPLETED", queue_position=None,
                       result=delivery["payload"])
    else:
        error = delivery.get("payload") or {"detail": delivery.get("payload_error")
                                            or delivery.get("error")}
        cancelled = isinstance(error, dict) and error.get("detail") == "Request was cancelled"
        history.update(request_id, status="CANCELLED" if cancelled or row["cancel_requested"]
                       else "FAILED", error=error)
    return jsonify({"ok": True, "changed": True})
