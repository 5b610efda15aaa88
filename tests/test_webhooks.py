"""The signed webhook receiver, fed by the local runtime's real, signed deliveries."""

import hashlib
import json
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.hazmat.primitives.serialization import PublicFormat

from falweb import history
from falweb.testing import wait_until
from falweb.webhooks import WebhookError
from falweb.webhooks import verify_webhook


def wait_row(app, request_id, timeout=20):
    def settled():
        with app.app_context():
            row = history.get(request_id)
        return row if row["status"] in history.TERMINAL else None

    return wait_until(settled, timeout=timeout, interval=0.05,
                      message=f"history row {request_id} to settle")


def test_delivery_from_the_runtime_completes_the_history_row(app, live_server):
    base = live_server.url
    hook = base + "/webhooks/fal"
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl", params={"fal_webhook": hook},
                         json={"prompt": "hooked", "num_inference_steps": 2,
                               "image_size": "square"}, timeout=10).json()
    with app.app_context():
        history.add(body["request_id"], "fal-ai/fast-sdxl", {"prompt": "hooked"}, "local")
    row = wait_row(app, body["request_id"])
    assert row["status"] == "COMPLETED"
    assert row["result"]["prompt"] == "hooked" and row["result"]["images"]


def test_failed_request_is_recorded_as_failed(no_dns, app, live_server):
    base = live_server.url
    with app.app_context():
        runtime = app.extensions["falweb"]["local_app"].extensions["falweb_local"]
    # A public-looking URL that cannot resolve (no_dns answers so at once, as a resolver
    # would, without waiting on one): the engine fails the job with a 422 result.
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl/image-to-image",
                         params={"fal_webhook": base + "/webhooks/fal"},
                         json={"prompt": "x", "image_url": "https://no-such-host.invalid/x.png",
                               "num_inference_steps": 1}, timeout=10).json()
    with app.app_context():
        history.add(body["request_id"], "fal-ai/fast-sdxl/image-to-image", {"prompt": "x"},
                    "local")
    row = wait_row(app, body["request_id"])
    assert row["status"] == "FAILED"
    # The webhook or the app's own reconciling poll may get there first; both name the field.
    assert "image_url" in json.dumps(row["error"])
    assert runtime.queue.get(body["request_id"]).error_type == "validation_error"


def signed(key, request_id, body, timestamp=None, user="u"):
    timestamp = str(int(timestamp or time.time()))
    message = "\n".join([request_id, user, timestamp, hashlib.sha256(body).hexdigest()])
    return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": user,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": key.sign(message.encode()).hex()}


def test_receiver_refuses_forged_stale_and_unsigned_deliveries(app, client):
    forger = Ed25519PrivateKey.generate()
    with app.app_context():
        history.add("rid-1", "fal-ai/fast-sdxl", {"prompt": "x"}, "local")
    body = json.dumps({"request_id": "rid-1", "status": "OK", "payload": {"images": []}}).encode()
    forged = client.post("/webhooks/fal", data=body, headers=signed(forger, "rid-1", body))
    assert forged.status_code == 401
    unsigned = client.post("/webhooks/fal", data=body)
    assert unsigned.status_code == 401 and "missing" in unsigned.get_json()["detail"]
    with app.app_context():
        assert history.get("rid-1")["status"] == "IN_QUEUE"


def test_verify_webhook_rules():
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    import base64

    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519",
                      "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}
    body = b'{"status": "OK"}'
    assert verify_webhook(signed(key, "r", body), body, jwks) == "r"
    with pytest.raises(WebhookError, match="window"):
        verify_webhook(signed(key, "r", body, time.time() - 301), body, jwks)
    with pytest.raises(WebhookError, match="no key"):
        verify_webhook(signed(key, "r", body), body + b" ", jwks)  # body changed
    with pytest.raises(WebhookError, match="user id"):
        verify_webhook(signed(key, "r", body), body, jwks, user_id="someone-else")
    other = {"keys": [{"kty": "RSA"}] + jwks["keys"]}  # unknown key types are skipped
    assert verify_webhook(signed(key, "r", body), body, other) == "r"


def test_repeated_delivery_changes_nothing(app, live_server):
    base = live_server.url
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl",
                         json={"prompt": "twice", "num_inference_steps": 1,
                               "image_size": "square"}, timeout=10).json()
    runtime = app.extensions["falweb"]["local_app"].extensions["falweb_local"]
    from tests.local_helpers import wait_status

    wait_status(body["status_url"])
    with app.app_context():
        history.add(body["request_id"], "fal-ai/fast-sdxl", {"prompt": "twice"}, "local")
    from falweb.local.delivery import webhook_body

    raw = webhook_body(runtime.queue.get(body["request_id"]))
    headers = runtime.deliveries.headers(body["request_id"], raw)
    first = requests.post(base + "/webhooks/fal", data=raw, headers=headers, timeout=10)
    second = requests.post(base + "/webhooks/fal", data=raw, headers=headers, timeout=10)
    assert first.json() == {"ok": True, "changed": True}
    assert second.json() == {"ok": True, "changed": False}
