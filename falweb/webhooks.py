"""Signed webhook receiver: ``POST /webhooks/fal`` (DESIGN §8).

A delivery is checked before its body is read (headers, timestamp window, size), then its
Ed25519 signature (:mod:`falweb.webhook_signature`), then it finishes the request's history
row through :mod:`falweb.history_sync`, once: fal retries, and a repeated delivery changes
nothing. A delivery that arrives before its row exists is held until the row is written.
"""

import logging
import threading

import requests
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from flask import url_for

from falweb import backend
from falweb import history
from falweb import history_sync
from falweb.webhook_signature import FAL_JWKS_URL
from falweb.webhook_signature import JWKSCache
from falweb.webhook_signature import WebhookError
from falweb.webhook_signature import check_headers
from falweb.webhook_signature import verify_webhook

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("falweb.webhooks")


def init_app(app):
    app.extensions["falweb_webhooks"] = {"jwks": None, "lock": threading.Lock()}
    app.register_blueprint(bp)


def webhook_url():
    """Where the backend should deliver webhooks for this app's requests, or None.

    ``FALWEB_PUBLIC_URL`` when set (fal must be able to reach it); with the embedded local
    runtime, the app's own address; otherwise None: the pages' polls are the only source.
    With the embedded runtime the URL is also allowed as a webhook destination
    (``Runtime.allow_webhook_prefix``): the runtime delivers to public addresses only
    unless told, and the app's own address is usually loopback or private.
    """
    path = url_for("webhooks.receive")
    public = current_app.config["FALWEB_PUBLIC_URL"]
    runtime = backend.embedded_runtime()
    if public:
        url = public.rstrip("/") + path
    elif runtime is not None:
        own = backend.self_url()
        if not own:
            return None
        url = own + path
    else:
        return None
    if runtime is not None:
        # The embedded runtime delivers only to public addresses unless a URL is allowed:
        # this one is the app itself (often 127.0.0.1 or a LAN address).
        runtime.allow_webhook_prefix(url)
    return url


def _keys():
    """Keys that sign this backend's webhooks: the embedded runtime's, or a cached JWKS."""
    runtime = backend.embedded_runtime()
    if runtime is not None and not current_app.config["FALWEB_WEBHOOK_JWKS_URL"]:
        return runtime.webhook_key.jwks()
    state = current_app.extensions["falweb_webhooks"]
    with state["lock"]:
        if state["jwks"] is None:
            url = current_app.config["FALWEB_WEBHOOK_JWKS_URL"]
            if not url:
                base = backend.local_base()
                url = f"{base}/rest/.well-known/jwks.json" if base else FAL_JWKS_URL
            state["jwks"] = JWKSCache(url, timeout=current_app.config["FALWEB_HTTP_TIMEOUT"])
        return state["jwks"]


def _refused(status, error, detail):
    return jsonify({"error": error, "detail": detail}), status


@bp.post("/fal")
def receive():
    """Finish the request's history row from a verified delivery.

    200 ``{"ok": true, "changed": bool}`` (also for a repeated delivery, so fal stops
    retrying; ``"held": true`` when the row is not written yet); 401 when the headers or the
    signature do not verify; 400 when the body is not fal's JSON; 411 without a length; 413 above
    ``FALWEB_WEBHOOK_MAX_BYTES``; 502 when the signing keys cannot be fetched (fal retries).
    """
    config = current_app.config
    options = {"tolerance": config["FALWEB_WEBHOOK_TOLERANCE"],
               "user_id": config["FALWEB_WEBHOOK_USER_ID"] or None}
    # Headers first: a forged or stale delivery costs no body read and no key fetch.
    try:
        check_headers(request.headers, **options)
    except WebhookError as exc:
        log.warning("webhook refused: %s", exc)
        return _refused(401, "invalid signature", str(exc))
    limit = config["FALWEB_WEBHOOK_MAX_BYTES"]
    if request.content_length is None:
        return _refused(411, "length required", "a webhook must send Content-Length")
    if request.content_length > limit:
        return _refused(413, "body too large", f"a webhook body is at most {limit} bytes")
    body = request.get_data(cache=False)  # the raw bytes: the signature covers them exactly
    try:
        request_id = verify_webhook(request.headers, body, _keys(), **options)
    except WebhookError as exc:
        log.warning("webhook refused: %s", exc)
        return _refused(401, "invalid signature", str(exc))
    except (requests.RequestException, ValueError) as exc:
        log.warning("webhook keys unavailable: %s", type(exc).__name__)
        return _refused(502, "signing keys unavailable", "fal may retry this delivery")
    try:
        delivery = history_sync.parse_webhook(body)
    except ValueError as exc:
        return _refused(400, "invalid body", str(exc))
    if delivery.get("request_id") not in (None, request_id):
        return _refused(400, "invalid body", "request_id does not match")
    row = history.get_or_hold_webhook(request_id, body)
    if row is None:
        return jsonify({"ok": True, "changed": False, "held": True})
    with backend.client() as client:
        changed = history_sync.apply_webhook(client, row, delivery)
    return jsonify({"ok": True, "changed": changed})
