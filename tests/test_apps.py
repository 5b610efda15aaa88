"""Your own fal apps behind the local runtime: fal's official Python client and falweb's
client use them through fal's whole protocol, as they would use fal.

The example apps (``examples/``) run unchanged in the fal SDK's own virtualenv
(``.venv-falapps``, made by ``scripts/test-setup.sh``); these tests skip without it.
"""

import io
import json
import time

import pytest
import requests
from PIL import Image

from falweb.testing import wait_until
from tests.apps_helpers import EXAMPLES
from tests.apps_helpers import WebhookReceiver
from tests.apps_helpers import healthy
from tests.apps_helpers import hosting
from tests.apps_helpers import official_client
from tests.apps_helpers import require_fal_sdk
from tests.local_helpers import wait_status

pytestmark = pytest.mark.slow

T2I = "local/text-to-image"
APPS = [f"{EXAMPLES}/fal_text_to_image.py::TextToImage",
        f"{EXAMPLES}/fal_streaming.py::StreamingText",
        f"{EXAMPLES}/fal_realtime.py::RealtimeSketch"]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """One runtime hosting the three example fal apps, shared by this module's tests."""
    require_fal_sdk()
    with hosting(tmp_path_factory.mktemp("apps"), APPS) as server:
        healthy(server.runtime)
        yield server


@pytest.fixture
def client(hosted):
    with official_client(hosted.url) as client:
        yield client


def _png(url):
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(answer.content))


def test_subscribe_gets_the_output_its_logs_and_a_file_from_runtime_storage(hosted, client):
    updates = []
    result = client.subscribe(T2I, {"prompt": "a fox", "seed": 7, "width": 64, "height": 48,
                                    "num_inference_steps": 3},
                              with_logs=True, on_queue_update=updates.append)
    assert result["seed"] == 7 and result["prompt"] == "a fox"
    image = result["images"][0]
    assert image["url"].startswith(f"{hosted.url}/cdn/files/")
    assert (image["width"], image["height"], image["content_type"]) == (64, 48, "image/png")
    assert _png(image["url"]).size == (64, 48)
    # What the app printed while it ran, recorded against this request.
    # (each polled status carries every line so far)
    logs = [entry["message"] for entry in (updates[-1].logs or [])]
    assert [line for line in logs if line.startswith("step ")] == \
        ["step 1/3", "step 2/3", "step 3/3"]


def test_same_prompt_and_seed_draw_the_same_image(client):
    first = client.run(T2I, {"prompt": "same", "seed": 3, "width": 32, "height": 32})
    second = client.run(T2I, {"prompt": "same", "seed": 3, "width": 32, "height": 32})
    assert first["images"][0]["url"] != second["images"][0]["url"]
    assert _png(first["images"][0]["url"]).tobytes() == _png(second["images"][0]["url"]).tobytes()


def _upload_png(base, image):
    # The runtime's storage API, as fal's JS client uploads (the Python client tries fal's
    # CDN host first, which this machine cannot reach).
    data = io.BytesIO()
    image.save(data, format="PNG")
    answer = requests.post(f"{base}/rest/storage/upload/initiate",
                           json={"content_type": "image/png", "file_name": "in.png"}, timeout=10)
    put = requests.put(answer.json()["upload_url"], data=data.getvalue(),
                       headers={"content-type": "image/png"}, timeout=10)
    assert put.ok, put.text
    return answer.json()["file_url"]


def test_an_uploaded_input_file_reaches_the_app(hosted, client):
    # The file's URL is the runtime's own (loopback): fal's SDK would refuse to fetch it, so
    # the runtime hands it over as a data: URI.
    url = _upload_png(hosted.url, Image.new("RGB", (20, 10), (1, 2, 3)))
    assert url.startswith(hosted.url)
    handle = client.submit(T2I, {"prompt": "over", "width": 40, "height": 40,
                                 "image_url": url})
    handle.get()
    logs = [line["message"] for line in handle.status(with_logs=True).logs]
    assert "input image 20x10" in logs


def test_invalid_input_is_the_apps_422_naming_the_field(hosted):
    answer = requests.post(f"{hosted.url}/queue/{T2I}", json={"width": "wide"}, timeout=10)
    assert answer.status_code == 200
    status = wait_status(answer.json()["status_url"])
    assert status["error_type"] == "validation_error"
    result = requests.get(answer.json()["response_url"], timeout=10)
    assert result.status_code == 422
    fields = {tuple(item["loc"]) for item in result.json()["detail"]}
    assert {("body", "prompt"), ("body", "width")} <= fields
    run = requests.post(f"{hosted.url}/run/{T2I}", json={"width": "wide"}, timeout=10)
    assert run.status_code == 422


def test_queue_with_a_webhook_delivers_the_output_once(hosted, client):
    receiver = WebhookReceiver()
    try:
        hosted.runtime.allow_webhook_prefix(receiver.url)
        handle = client.submit(T2I, {"prompt": "hooked", "width": 32, "height": 32},
                               webhook_url=receiver.url)
        wait_until(lambda: receiver.bodies, timeout=30, message="the webhook")
        time.sleep(0.3)  # a second delivery would come right after the first
        assert len(receiver.bodies) == 1
        body = receiver.bodies[0]
        assert body["request_id"] == handle.request_id and body["status"] == "OK"
        assert _png(body["payload"]["images"][0]["url"]).size == (32, 32)
    finally:
        receiver.close()


def test_cancel_mid_run_reaches_the_app_and_ends_the_request(hosted, client):
    handle = client.submit(T2I, {"prompt": "long", "num_inference_steps": 50,
                                 "step_seconds": 0.2, "width": 32, "height": 32})
    wait_until(lambda: getattr(handle.status(with_logs=True), "logs", None), timeout=30,
               message=lambda: f"the app's first step ({handle.status(with_logs=True)})")
    handle.cancel()
    status = wait_status(f"{hosted.url}/queue/{T2I}/requests/{handle.request_id}/status",
                         timeout=10)
    assert status["error_type"] == "request_cancelled"
    steps = [line for line in status["logs"] if line["message"].startswith("step ")]
    assert len(steps) < 50


def test_stream_passes_the_apps_server_sent_events(client):
    events = list(client.stream("local/streaming-text", {"prompt": "w", "steps": 3}))
    assert events[:3] == [{"step": n, "partial": True} for n in (1, 2, 3)]
    assert events[-1] == {"text": "w-1 w-2 w-3", "steps": 3}


def test_realtime_frames_pass_through_with_a_token(client):
    with client.realtime("local/realtime-sketch") as connection:
        answers = []
        for seed in range(3):
            connection.send({"prompt": "rt", "seed": seed, "size": 16})
            answers.append(connection.recv())
    assert [a["seed"] for a in answers] == [0, 1, 2]
    assert Image.open(io.BytesIO(answers[0]["image"])).size == (16, 16)


def test_realtime_refuses_a_bad_token(hosted):
    import websocket

    ws = websocket.create_connection(
        hosted.url.replace("http", "ws") + "/run/local/realtime-sketch/realtime"
        "?fal_jwt_token=forged", timeout=10)
    try:
        assert json.loads(ws.recv()) == {"status": "error", "error": "Unauthorized"}
    finally:
        ws.close()


def test_falwebs_own_client_subscribes(hosted):
    from falweb.client import FalClient
    from falweb.hosts import Hosts

    updates = []
    with FalClient(hosts=Hosts(hosted.url), poll_interval=0.05) as client:
        result = client.subscribe(T2I, {"prompt": "own client", "width": 24, "height": 24},
                                  logs=True, mode="streaming", on_queue_update=updates.append)
    assert result["prompt"] == "own client"
    assert _png(result["images"][0]["url"]).size == (24, 24)
    assert updates[-1].status == "COMPLETED"
    assert any(log["message"] == "step 4/4" for u in updates for log in (u.logs or []))


def test_healthz_shows_each_app_and_the_openapi_documents(hosted):
    state = requests.get(f"{hosted.url}/healthz", timeout=10).json()
    apps = {app["id"]: app for app in state["apps"]}
    assert set(apps) == {T2I, "local/streaming-text", "local/realtime-sketch"}
    assert apps[T2I]["state"] == "healthy" and apps[T2I]["max_concurrency"] == 2
    documents = hosted.runtime.apps.openapi_documents()
    assert "/" in documents[T2I]["paths"]
    assert "prompt" in documents[T2I]["components"]["schemas"]["Input"]["properties"]
    over_http = requests.get(f"{hosted.url}/apps/{T2I}/openapi.json", timeout=10)
    assert over_http.json() == documents[T2I]
    assert requests.get(f"{hosted.url}/apps", timeout=10).json()["apps"] == state["apps"]
    missing = requests.get(f"{hosted.url}/apps/local/nope/openapi.json", timeout=10)
    assert missing.status_code == 404 and "local/nope" in missing.json()["detail"]


def test_no_fal_key_reaches_an_app(hosted, monkeypatch):
    # The app's environment is built by the supervisor: look at the live process's.
    pids = [app["pid"] for app in hosted.runtime.apps.state()]
    for pid in pids:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        assert env[b"FAL_KEY"] == b"local:local"
        assert b"FAL_KEY_SECRET" not in env and b"FAL_KEY_ID" not in env


def test_the_cli_generates_with_a_hosted_app(hosted, tmp_path, monkeypatch, capsys):
    from falweb.cli import main

    for key in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FALWEB_LOCAL_URL", hosted.url)
    assert main(["generate", T2I, "--prompt", "from the cli", "--param", "width=24",
                 "--param", "height=20", "--param", "seed=4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "seed: 4" in out
    saved = [line.split(": ", 1)[1] for line in out if line.startswith("saved: ")]
    assert len(saved) == 1
    with Image.open(saved[0]) as image:
        assert image.size == (24, 20)
