"""The local runtime's queue API, as fal's official clients see it (fal-protocol §4)."""

import hashlib
import json
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from flask import request as flask_request

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.testing import ServerThread
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until
from tests.local_helpers import SEED_PROMPT
from tests.local_helpers import sse_events
from tests.local_helpers import wait_status


@pytest.fixture
def slow_runtime(local_config):
    """One worker, 50 ms a step: long enough to see IN_QUEUE and IN_PROGRESS."""
    with serve_local_runtime(local_config | {"FALWEB_LOCAL_WORKERS": 1,
                                             "FALWEB_LOCAL_STEP_DELAY": 0.05}) as server:
        yield server


def submit(base, endpoint_id, input, **kwargs):
    answer = requests.post(f"{base}/queue/{endpoint_id}", json=input, timeout=10, **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_submit_answers_request_id_and_the_four_urls(local_runtime):
    body = submit(local_runtime.url, "fal-ai/realistic-vision", {"prompt": SEED_PROMPT})
    rid = body["request_id"]
    root = f"{local_runtime.url}/queue/fal-ai/realistic-vision/requests/{rid}"
    assert body["status"] == "IN_QUEUE"
    assert body["response_url"] == root
    assert body["status_url"] == root + "/status"
    assert body["cancel_url"] == root + "/cancel"
    assert isinstance(body["queue_position"], int) and body["queue_position"] >= 0


def test_sub_path_endpoint_uses_the_app_base_in_its_urls(local_runtime, tmp_path):
    png = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(png)
    import base64

    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    body = submit(local_runtime.url, "fal-ai/fast-sdxl/image-to-image",
                  {"prompt": "a cat", "image_url": uri, "num_inference_steps": 2,
                   "image_size": "square"})
    assert "/queue/fal-ai/fast-sdxl/requests/" in body["status_url"]
    final = wait_status(body["status_url"])
    assert final["status"] == "COMPLETED" and "error" not in final


def test_status_goes_in_queue_in_progress_completed(slow_runtime):
    base = slow_runtime.url
    first = submit(base, "fal-ai/realistic-vision", {"prompt": "one", "num_inference_steps": 10})
    second = submit(base, "fal-ai/realistic-vision", {"prompt": "two", "num_inference_steps": 10})
    third = submit(base, "fal-ai/realistic-vision", {"prompt": "three", "num_inference_steps": 2})

    queued = requests.get(third["status_url"], timeout=10)
    assert queued.status_code == 202
    assert queued.json()["status"] == "IN_QUEUE"
    assert queued.json()["queue_position"] >= 1

    running = wait_status(first["status_url"], "IN_PROGRESS")
    assert running["logs"] is not None and "queue_position" not in running
    partial = requests.get(first["status_url"], params={"logs": "0"}, timeout=10).json()
    assert partial["status"] in ("IN_PROGRESS", "COMPLETED") and partial["logs"] is None

    done = wait_status(first["status_url"])
    code = requests.get(first["status_url"], timeout=10).status_code
    assert code == 200
    messages = [log["message"] for log in done["logs"]]
    assert messages[-1] == "Step 10/10"
    assert {"message", "level", "source", "timestamp"} <= set(done["logs"][0])
    assert done["metrics"]["inference_time"] > 0
    # logs are cumulative: a later poll repeats the earlier lines
    assert messages[: len(running["logs"])] == [log["message"] for log in running["logs"]]
    wait_status(second["status_url"])
    wait_status(third["status_url"])


@pytest.mark.parametrize("value,expect_logs", [("1", True), ("true", True), ("0", False),
                                               ("false", False), (None, False)])
def test_logs_parameter_forms(local_runtime, value, expect_logs):
    body = submit(local_runtime.url, "fal-ai/fast-sdxl", {"prompt": "x", "num_inference_steps": 2,
                                                         "image_size": "square"})
    wait_status(body["status_url"])
    params = {} if value is None else {"logs": value}
    status = requests.get(body["status_url"], params=params, timeout=10).json()
    assert "logs" in status
    assert (status["logs"] is not None) == expect_logs


def test_result_has_the_seed_output_shape_and_real_images(local_runtime):
    body = submit(local_runtime.url, "fal-ai/realistic-vision",
                  {"prompt": SEED_PROMPT, "image_size": {"width": 320, "height": 240},
                   "num_inference_steps": 3, "num_images": 2, "format": "png", "seed": 42})
    wait_status(body["status_url"])
    answer = requests.get(body["response_url"], timeout=10)
    assert answer.status_code == 200
    assert answer.headers["x-fal-request-id"] == body["request_id"]
    result = answer.json()
    assert set(result) == {"images", "timings", "seed", "has_nsfw_concepts", "prompt"}
    assert result["seed"] == 42 and result["prompt"] == SEED_PROMPT
    assert result["has_nsfw_concepts"] == [False, False]
    assert len(result["images"]) == 2
    from io import BytesIO

    from PIL import Image

    for image in result["images"]:
        assert image["content_type"] == "image/png"
        download = requests.get(image["url"], timeout=10)
        assert download.headers["content-type"] == "image/png"
        picture = Image.open(BytesIO(download.content))
        assert picture.format == "PNG" and picture.size == (320, 240)


def test_result_before_completion_and_unknown_ids(slow_runtime):
    body = submit(slow_runtime.url, "fal-ai/realistic-vision", {"prompt": "x"})
    early = requests.get(body["response_url"], timeout=10)
    assert early.status_code == 400 and "detail" in early.json()
    base = f"{slow_runtime.url}/queue/fal-ai/realistic-vision/requests/nope"
    assert requests.get(base + "/status", timeout=10).status_code == 404
    assert requests.get(base, timeout=10).status_code == 404
    # the id of another app's request is not found under this app
    other = body["status_url"].replace("realistic-vision", "fast-sdxl")
    assert requests.get(other, timeout=10).status_code == 404
    requests.put(body["cancel_url"], timeout=10)


def test_cancel_queued_running_completed_and_unknown(slow_runtime):
    base = slow_runtime.url
    running = submit(base, "fal-ai/realistic-vision", {"prompt": "run", "num_inference_steps": 40})
    queued = submit(base, "fal-ai/realistic-vision", {"prompt": "wait", "num_inference_steps": 40})
    wait_status(running["status_url"], "IN_PROGRESS")

    answer = requests.put(queued["cancel_url"], headers={"Content-Type": "application/json"},
                          timeout=10)
    assert (answer.status_code, answer.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    gone = requests.get(queued["status_url"], timeout=10).json()
    assert gone["status"] == "COMPLETED" and gone["error_type"] == "request_cancelled"

    answer = requests.put(running["cancel_url"], timeout=10)
    assert (answer.status_code, answer.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    stopped = wait_status(running["status_url"], timeout=10)
    assert stopped["error_type"] == "request_cancelled"
    assert len(stopped["logs"]) < 40  # the engine stopped between steps
    result = requests.get(running["response_url"], timeout=10)
    assert result.status_code == 400 and result.json()["detail"]

    again = requests.put(running["cancel_url"], timeout=10)
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    unknown = requests.put(f"{base}/queue/fal-ai/realistic-vision/requests/nope/cancel",
                           timeout=10)
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})


def test_invalid_input_is_422_naming_the_field(local_runtime):
    answer = requests.post(f"{local_runtime.url}/queue/fal-ai/realistic-vision",
                           json={"prompt": "x", "num_images": "many", "format": "gif"},
                           timeout=10)
    assert answer.status_code == 422
    locs = {tuple(item["loc"]) for item in answer.json()["detail"]}
    assert ("body", "num_images") in locs and ("body", "format") in locs
    for item in answer.json()["detail"]:
        assert item["msg"] and item["type"]

    missing = requests.post(f"{local_runtime.url}/queue/fal-ai/realistic-vision",
                            data=b"", headers={"Content-Type": "application/json"}, timeout=10)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "prompt"]

    garbage = requests.post(f"{local_runtime.url}/queue/fal-ai/realistic-vision", data=b"{nope",
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert garbage.status_code == 422 and garbage.json()["detail"][0]["loc"] == ["body"]


def test_unknown_endpoint_is_404_json(local_runtime):
    answer = requests.post(f"{local_runtime.url}/queue/fal-ai/not-a-model", json={"prompt": "x"},
                           timeout=10)
    assert answer.status_code == 404
    assert "not-a-model" in answer.json()["detail"]
    route = requests.get(f"{local_runtime.url}/nowhere", timeout=10)
    assert route.status_code == 404 and route.headers["content-type"] == "application/json"


def test_seed_nextjs_alias_runs_as_fal_ai_lora(local_runtime):
    input = {"prompt": "a cat", "model_name": "stabilityai/stable-diffusion-xl-base-1.0",
             "image_size": "square_hd", "num_inference_steps": 2}
    body = submit(local_runtime.url, "110602490/lora", input)
    assert "/queue/110602490/lora/requests/" in body["status_url"]
    wait_status(body["status_url"])
    result = requests.get(body["response_url"], timeout=10).json()
    assert result["images"][0]["width"] == 1024
    assert "timings" not in result  # fal-ai/lora's output has no timings


def test_status_stream_sends_incremental_logs_and_closes_after_completed(local_runtime):
    body = submit(local_runtime.url, "fal-ai/fast-sdxl",
                  {"prompt": "x", "num_inference_steps": 5, "image_size": "square"})
    stream = requests.get(body["status_url"] + "/stream", params={"logs": "1"}, stream=True,
                          headers={"Accept": "application/json, text/event-stream"}, timeout=30)
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = sse_events(stream)
    assert events[-1]["status"] == "COMPLETED"
    assert all(e["status"] != "COMPLETED" for e in events[:-1])
    messages = [log["message"] for e in events if e.get("logs") for log in e["logs"]]
    assert messages.count("Step 5/5") == 1  # incremental, never repeated
    assert messages.index("Step 1/5") < messages.index("Step 5/5")


def test_a_status_stream_is_woken_by_each_change_not_by_its_poll(local_config):
    # The stream's own look-again interval set to a minute: each step's log line and the
    # completion still arrive, because the queue wakes the streams of its process.
    with serve_local_runtime(local_config | {"FALWEB_LOCAL_STEP_DELAY": 0.1}) as server:
        server.runtime.changes.poll = 60
        body = submit(server.url, "fal-ai/fast-sdxl",
                      {"prompt": "x", "num_inference_steps": 4, "image_size": "square"})
        stream = requests.get(body["status_url"] + "/stream", params={"logs": "1"},
                              stream=True, timeout=30)
        events = sse_events(stream)
        assert events[-1]["status"] == "COMPLETED"
        messages = [log["message"] for e in events if e.get("logs") for log in e["logs"]]
        assert "Step 4/4" in messages


def test_a_log_line_is_seen_before_the_next_step_and_stored_once(local_config):
    # The engine's first line waits for the job's next write (its first step, 3 s later
    # here), or for the lease keeper, which writes lines held for 50 ms: so it is seen well
    # before that step, and then stored once, in order.
    with serve_local_runtime(local_config | {"FALWEB_LOCAL_STEP_DELAY": 3.0}) as server:
        body = submit(server.url, "fal-ai/fast-sdxl",
                      {"prompt": "x", "num_inference_steps": 1, "image_size": "square"})

        def first_line_alone():
            logs = requests.get(body["status_url"], params={"logs": 1},
                                timeout=10).json()["logs"] or []
            messages = [line["message"] for line in logs]
            return messages if messages and "Step 1/1" not in messages else None

        messages = wait_until(first_line_alone, timeout=2.5, interval=0.05,
                              message="the engine's first line before its first step")
        assert messages[0].startswith("Preview engine")
        done = wait_status(body["status_url"])
        messages = [line["message"] for line in done["logs"]]
        assert messages.count(messages[0]) == 1 and messages[-1] == "Step 1/1"


def test_priority_low_waits_behind_normal(local_config):
    app = create_local_app(local_config | {"FALWEB_LOCAL_WORKERS": 0})
    runtime = runtime_of(app)
    with ServerThread(app) as server:
        low = submit(server.url, "fal-ai/fast-sdxl", {"prompt": "low"},
                     headers={"x-fal-queue-priority": "low"})
        normal = submit(server.url, "fal-ai/fast-sdxl", {"prompt": "normal"})
        assert normal["queue_position"] == 0
        position = requests.get(low["status_url"], timeout=10).json()["queue_position"]
        assert position == 1
        bad = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl", json={"prompt": "x"},
                            headers={"x-fal-queue-priority": "urgent"}, timeout=10)
        assert bad.status_code == 422
    runtime.close()


def test_webhook_is_delivered_signed_as_fal_signs_it(local_runtime):
    received = []
    got = threading.Event()
    hook = Flask("hook")

    @hook.post("/hook")
    def receive():
        received.append((dict(flask_request.headers), flask_request.get_data()))
        got.set()
        return "", 204

    with ServerThread(hook) as hook_server:
        # A loopback receiver: allowed explicitly, as an app allows its own URL.
        local_runtime.runtime.allow_webhook_prefix(hook_server.url + "/hook")
        body = submit(local_runtime.url, "fal-ai/fast-sdxl",
                      {"prompt": "hooked", "num_inference_steps": 2, "image_size": "square"},
                      params={"fal_webhook": hook_server.url + "/hook"})
        assert body["gateway_request_id"] == body["request_id"]
        assert got.wait(15)
    headers, raw = received[0]
    payload = json.loads(raw)
    assert payload["request_id"] == body["request_id"]
    assert payload["status"] == "OK" and payload["error"] is None
    assert payload["payload"]["images"][0]["url"].startswith(local_runtime.url)
    assert raw == json.dumps(payload, sort_keys=True).encode()

    jwks = requests.get(f"{local_runtime.url}/rest/.well-known/jwks.json", timeout=10).json()
    import base64

    x = jwks["keys"][0]["x"]
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    timestamp = headers["X-Fal-Webhook-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 60
    message = "\n".join([headers["X-Fal-Webhook-Request-Id"], headers["X-Fal-Webhook-User-Id"],
                         timestamp, hashlib.sha256(raw).hexdigest()]).encode()
    key.verify(bytes.fromhex(headers["X-Fal-Webhook-Signature"]), message)  # raises if forged


def test_invalid_webhook_url_is_refused(local_runtime):
    answer = requests.post(f"{local_runtime.url}/queue/fal-ai/fast-sdxl", json={"prompt": "x"},
                           params={"fal_webhook": "ftp://x"}, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "fal_webhook"]


def test_start_timeout_fails_a_request_that_waited_too_long(slow_runtime):
    base = slow_runtime.url
    busy = submit(base, "fal-ai/fast-sdxl", {"prompt": "busy", "num_inference_steps": 30,
                                             "image_size": "square"})
    late = submit(base, "fal-ai/fast-sdxl", {"prompt": "late", "image_size": "square"},
                  headers={"x-fal-request-timeout": "0.5"})
    final = wait_status(late["status_url"], timeout=30)
    assert final["error_type"] == "request_timeout"
    result = requests.get(late["response_url"], timeout=10)
    assert result.status_code == 504
    assert result.headers["x-fal-request-timeout-type"] == "user"
    assert wait_status(busy["status_url"])["status"] == "COMPLETED"
    bad = requests.post(f"{base}/queue/fal-ai/fast-sdxl", json={"prompt": "x"},
                        headers={"x-fal-request-timeout": "soon"}, timeout=10)
    assert bad.status_code == 422


def test_oversized_json_bodies_get_413(local_config):
    app = create_local_app(local_config | {"FALWEB_LOCAL_MAX_REQUEST_BYTES": 1000})
    with ServerThread(app) as server:
        big = {"prompt": "x" * 2000}
        answer = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl", json=big, timeout=10)
        assert answer.status_code == 413 and "storage" in answer.json()["detail"]

        def chunks():  # no Content-Length: the limit holds on what is read
            yield json.dumps(big).encode()

        answer = requests.post(f"{server.url}/run/fal-ai/fast-sdxl", data=chunks(),
                               headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 413
    runtime_of(app).close()
