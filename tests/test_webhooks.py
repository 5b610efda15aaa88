"""The signed webhook receiver, fed by the local runtime's real, signed deliveries."""

import hashlib
import json
import socket
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.hazmat.primitives.serialization import PublicFormat

from falweb import backend
from falweb import history
from falweb import history_sync
from falweb import webhooks
from falweb.local.delivery import webhook_body
from falweb.testing import wait_until
from falweb.webhook_signature import JWKSCache
from falweb.webhook_signature import WebhookError
from falweb.webhook_signature import verify_webhook


def wait_row(app, request_id, timeout=20):
    def settled():
        with app.app_context():
            row = history.get(request_id)
        return row if row["status"] in history.TERMINAL else None

    return wait_until(settled, timeout=timeout, interval=0.05,
                      message=f"history row {request_id} to settle")


def own_webhook_url(app):
    """The app's webhook URL as its pages ask for it, which also lets the embedded runtime
    deliver there (a loopback address, refused unless the app allows it)."""
    with app.test_request_context():
        return webhooks.webhook_url()


def test_delivery_from_the_runtime_completes_the_history_row(app, live_server):
    base = live_server.url
    hook = own_webhook_url(app)
    assert hook == base + "/webhooks/fal"
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl", params={"fal_webhook": hook},
                         json={"prompt": "hooked", "num_inference_steps": 2,
                               "image_size": "square"}, timeout=10).json()
    with app.app_context(), backend.client(app) as client:
        history_sync.add(client, body["request_id"], "fal-ai/fast-sdxl", {"prompt": "hooked"},
                         backend="local")
    row = wait_row(app, body["request_id"])
    assert row["status"] == "COMPLETED"
    assert row["result"]["prompt"] == "hooked" and row["result"]["images"]


def test_a_webhook_before_its_row_is_held_and_applied_when_the_row_is_written(app, live_server):
    base = live_server.url
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl",
                         json={"prompt": "early", "num_inference_steps": 3,
                               "image_size": "square"}, timeout=10).json()
    from tests.local_helpers import wait_status

    wait_status(body["status_url"])
    runtime = backend.embedded_runtime(app)
    raw = webhook_body(runtime.queue.get(body["request_id"]))
    # The delivery arrives first, as it can when the backend is quicker than our submit.
    early = requests.post(base + "/webhooks/fal", data=raw,
                          headers=runtime.deliveries.headers(body["request_id"], raw),
                          timeout=10)
    assert early.json() == {"ok": True, "changed": False, "held": True}
    with app.app_context(), backend.client(app) as client:
        history_sync.add(client, body["request_id"], "fal-ai/fast-sdxl", {"prompt": "early"},
                         backend="local")
        row = history.get(body["request_id"])
    # Finished by the held delivery at once, logs included (fetched with the status).
    assert row["status"] == "COMPLETED" and row["result"]["prompt"] == "early"
    assert [line["message"] for line in row["logs"]][-3:] == ["Step 1/3", "Step 2/3",
                                                             "Step 3/3"]


def test_a_webhook_finishes_a_row_with_all_its_logs(app, live_server):
    app.config["FALWEB_HISTORY_RECONCILE"] = False  # the webhook, not a poll, finishes it
    base = live_server.url
    # fal-ai/lora: its document allows 150 steps (fast-sdxl's, 50).
    body = requests.post(f"{base}/local/queue/fal-ai/lora",
                         json={"prompt": "long", "num_inference_steps": 150, "model_name": "m",
                               "image_size": "square"}, timeout=10).json()
    from tests.local_helpers import wait_status

    final = wait_status(body["status_url"] + "?logs=1")
    runtime = backend.embedded_runtime(app)
    raw = webhook_body(runtime.queue.get(body["request_id"]))
    with app.app_context():
        history.add(body["request_id"], "fal-ai/lora", {"prompt": "long"}, "local")
    answer = requests.post(base + "/webhooks/fal", data=raw,
                           headers=runtime.deliveries.headers(body["request_id"], raw),
                           timeout=10)
    assert answer.json() == {"ok": True, "changed": True}
    with app.app_context():
        row = history.get(body["request_id"])
    assert len(row["logs"]) == len(final["logs"]) > 150
    page = requests.get(f"{base}/requests/{body['request_id']}", timeout=10).text
    assert f"({len(final['logs'])} lines)" in page and "Step 150/150" in page


def test_failed_request_is_recorded_as_failed(no_dns, app, live_server):
    base = live_server.url
    with app.app_context():
        runtime = backend.embedded_runtime(app)
    # A public-looking URL that cannot resolve (no_dns answers so at once, as a resolver
    # would, without waiting on one): the engine fails the job with a 422 result.
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl/image-to-image",
                         params={"fal_webhook": own_webhook_url(app)},
                         json={"prompt": "x", "image_url": "https://no-such-host.invalid/x.png",
                               "num_inference_steps": 1}, timeout=10).json()
    # As the pages record a request: a webhook that came first (the job fails at once) is
    # held until the row exists, and applied by this call.
    with app.app_context(), backend.client(app) as client:
        history_sync.add(client, body["request_id"], "fal-ai/fast-sdxl/image-to-image",
                         {"prompt": "x"}, backend="local")
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
    # The first request would start the background reconcile, which settles the made-up
    # "rid-1" (unknown to the runtime: 404) as FAILED, racing the last assertion.
    app.config["FALWEB_HISTORY_RECONCILE"] = False
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


def finished_with_delivery(app, base, prompt):
    """A request finished on the embedded runtime, its unfinished history row, and the
    signed delivery the runtime would send for it: ``(request_id, body, headers)``."""
    from tests.local_helpers import wait_status

    app.config["FALWEB_HISTORY_RECONCILE"] = False  # a delivery, not a poll, finishes it
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl",
                         json={"prompt": prompt, "num_inference_steps": 1,
                               "image_size": "square"}, timeout=10).json()
    runtime = backend.embedded_runtime(app)
    wait_status(body["status_url"])
    with app.app_context():
        history.add(body["request_id"], "fal-ai/fast-sdxl", {"prompt": prompt}, "local")
    raw = webhook_body(runtime.queue.get(body["request_id"]))
    return body["request_id"], raw, runtime.deliveries.headers(body["request_id"], raw)


def test_repeated_delivery_changes_nothing(app, live_server):
    base = live_server.url
    _, raw, headers = finished_with_delivery(app, base, "twice")
    first = requests.post(base + "/webhooks/fal", data=raw, headers=headers, timeout=10)
    second = requests.post(base + "/webhooks/fal", data=raw, headers=headers, timeout=10)
    assert first.json() == {"ok": True, "changed": True}
    assert second.json() == {"ok": True, "changed": False}


def test_copies_of_a_delivery_arriving_together_finish_the_row_once(app, live_server):
    # A sender cut off mid-delivery sends again while the first copy may still be in
    # flight: copies race through the receiver, and exactly one of them finishes the row.
    from concurrent.futures import ThreadPoolExecutor

    base = live_server.url
    request_id, raw, headers = finished_with_delivery(app, base, "racing")

    def deliver(_):
        return requests.post(base + "/webhooks/fal", data=raw, headers=headers,
                             timeout=10).json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(deliver, range(8)))
    assert sorted(answer["changed"] for answer in answers) == [False] * 7 + [True]
    with app.app_context():
        assert history.get(request_id)["status"] == "COMPLETED"


def test_a_pending_status_never_undoes_a_finished_row(app):
    # A page's poll may read IN_PROGRESS from the backend just before a webhook finishes
    # the row; storing that answer afterwards must not put the row back in progress.
    with app.app_context():
        history.add("r-1", "fal-ai/fast-sdxl", {"prompt": "p"}, "local", status="IN_PROGRESS")
        row = history.get("r-1")
        assert history_sync.finish_once(row, result={"images": []}) is True
        assert history_sync.finish_once(row, error="late") is False
        assert history.update("r-1", only_unfinished=True, status="IN_PROGRESS") is False
        assert history.get("r-1")["status"] == "COMPLETED"


def test_forged_deliveries_cost_at_most_one_key_fetch_a_minute(local_runtime):
    jwks_url = local_runtime.url + "/rest/.well-known/jwks.json"
    keys = JWKSCache(jwks_url, timeout=5)
    forger = Ed25519PrivateKey.generate()
    body = b'{"status": "OK"}'
    for n in range(20):
        with pytest.raises(WebhookError, match="no key"):
            verify_webhook(signed(forger, f"r{n}", body), body, keys)
    # Keys fetched moments ago are not refetched for an unknown signer within the minute.
    assert keys.fetches == 1
    keys.min_refetch = 0  # a minute later: one refetch per failing delivery, no more
    with pytest.raises(WebhookError, match="no key"):
        verify_webhook(signed(forger, "late", body), body, keys)
    assert keys.fetches == 2


def test_webhook_headers_are_checked_before_the_body_is_read(client, live_server):
    stale = {"X-Fal-Webhook-Request-Id": "r", "X-Fal-Webhook-User-Id": "u",
             "X-Fal-Webhook-Timestamp": "1" * 400, "X-Fal-Webhook-Signature": "ab"}
    assert client.post("/webhooks/fal", data=b"x", headers=stale).status_code == 401
    stale["X-Fal-Webhook-Timestamp"] = "\u00b2"
    assert client.post("/webhooks/fal", data=b"x", headers=stale).status_code == 401
    # 64 MiB announced, none sent: the answer comes without waiting for the body.
    fresh = {**stale, "X-Fal-Webhook-Timestamp": str(int(time.time()))}
    head = "".join(f"{name}: {value}\r\n" for name, value in fresh.items())
    with socket.create_connection((live_server.host, live_server.port), timeout=10) as sock:
        sock.sendall(f"POST /webhooks/fal HTTP/1.1\r\nHost: x\r\n{head}"
                     f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 413")
