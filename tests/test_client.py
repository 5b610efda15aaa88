"""The sync client against the local runtime, over real HTTP: the seed's examples in Python,
and what only the sync client has (threads sharing one client, requests' session hooks).
Every call of both clients is in ``test_client_both.py``."""

import itertools
import threading
import time

import pytest

import falweb.client as fal
from falweb.client import ApiError
from falweb.client import FalClient
from falweb.client import FalTimeoutError
from falweb.client import QueueStatus
from falweb.client import ValidationError
from falweb.hosts import Hosts
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until

SEED_PROMPT = (
    "A hyperdetailed photograph of a Cat dressed as a mafia boss holding a fish walking down a "
    "Japanese fish market with an angry face, 8k resolution, best quality, beautiful "
    "photograph, dynamic lighting,"
)
SMALL = {"image_size": {"width": 64, "height": 64}, "num_inference_steps": 4}


# Keys or a local URL in the environment must not change what these tests talk to.
pytestmark = pytest.mark.usefixtures("no_fal_env")


@pytest.fixture
def default_fal(shared_runtime):
    """The module-level API pointed at the runtime, restored afterwards."""
    fal.config(hosts=Hosts(shared_runtime.url), poll_interval=0.02)
    yield fal
    fal.config(hosts=None, credentials=None, proxy_url=None, poll_interval=0.5)


@pytest.fixture
def slow_runtime(tmp_path):
    """A runtime whose steps take 0.2 s, so a request can be caught while it runs."""
    with serve_local_runtime({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "slow"),
                              "FALWEB_LOCAL_STEP_DELAY": 0.2, "FALWEB_LOCAL_WORKERS": 1}
                             ) as server:
        yield server


# -- the seed's examples, in Python --------------------------------------------------------------


def test_seed_subscribe_realistic_vision_with_logs(default_fal, slow_runtime, capsys):
    # fal.subscribe("fal-ai/realistic-vision", {input, logs: true, onQueueUpdate}); steps take
    # 0.2 s here so the request is seen IN_PROGRESS.
    fal.config(hosts=Hosts(slow_runtime.url))
    def on_queue_update(update):
        if update.status == "IN_PROGRESS":
            for message in [log["message"] for log in update.logs]:
                print(message)

    result = fal.subscribe("fal-ai/realistic-vision", input={"prompt": SEED_PROMPT, **SMALL},
                           logs=True, on_queue_update=on_queue_update)
    assert result["images"][0]["url"]
    assert result["prompt"] == SEED_PROMPT
    assert result.request_id
    assert "Step" in capsys.readouterr().out


def test_seed_config_credentials_are_sent_to_whatever_backend_is_configured(shared_runtime):
    client = FalClient(credentials="YOUR_FAL_KEY", hosts=Hosts(shared_runtime.url))
    assert client.run("fal-ai/fast-sdxl", {"prompt": "a cat", **SMALL})["images"]


def test_seed_queue_submit_status_result(default_fal):
    # const { request_id } = await fal.queue.submit("fal-ai/flux/dev", {input, webhookUrl})
    handle = fal.queue.submit("fal-ai/flux/dev", input={
        "prompt": "a cat", "seed": 6252023, "image_size": "landscape_4_3", "num_images": 4,
        "num_inference_steps": 2})
    request_id = handle["request_id"]
    status = fal.queue.status("fal-ai/flux/dev", request_id=request_id, logs=True)
    assert isinstance(status, QueueStatus)
    assert status.status in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    final = fal.queue.subscribe_to_status("fal-ai/flux/dev", request_id, poll_interval=0.02)
    assert final.status == "COMPLETED"
    result = fal.queue.result("fal-ai/flux/dev", request_id=request_id)
    assert len(result["images"]) == 4 and result["seed"] == 6252023
    assert result.request_id == request_id


def test_seed_nextjs_lora_example_with_the_legacy_id(default_fal):
    updates = []
    result = fal.subscribe("110602490-lora", input={
        "prompt": "a cat", "model_name": "stabilityai/stable-diffusion-xl-base-1.0",
        "image_size": "square_hd", "num_inference_steps": 2}, poll_interval=0.05, logs=True,
        on_queue_update=updates.append)
    image_url = result["images"][0]["url"]
    assert image_url.startswith("http")
    assert updates[-1].status == "COMPLETED"


def test_seed_stream_example(default_fal):
    stream = fal.stream("fal-ai/flux/dev", input={"prompt": "a cat", "seed": 6252023,
                                                  "num_inference_steps": 3, **SMALL})
    events = [event for event in stream]
    result = stream.done()
    assert len(events) >= 2
    assert result == events[-1] and result["images"]
    assert stream.request_id


# -- subscribe -------------------------------------------------------------------------------------


def test_subscribe_without_logs_gets_empty_logs(fal_client):
    updates = []
    fal_client.subscribe("fal-ai/fast-sdxl", {"prompt": "x", **SMALL},
                         on_queue_update=updates.append)
    assert all(u.logs == [] for u in updates)


def test_polling_never_overlaps_and_honours_the_interval(slow_runtime):
    client = FalClient(hosts=Hosts(slow_runtime.url))
    times = []
    client.subscribe("fal-ai/fast-sdxl", {"prompt": "x", **SMALL}, poll_interval=0.1,
                     on_queue_update=lambda u: times.append(time.monotonic()))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= 0.1


def test_subscribe_timeout_cancels_the_upstream_job(slow_runtime):
    client = FalClient(hosts=Hosts(slow_runtime.url), poll_interval=0.05)
    enqueued = []
    with pytest.raises(FalTimeoutError) as info:
        client.subscribe("fal-ai/fast-sdxl", {"prompt": "x", "num_inference_steps": 50},
                         timeout=0.6, on_enqueue=enqueued.append)
    assert info.value.request_id == enqueued[0]

    def completed():
        status = client.queue.status("fal-ai/fast-sdxl", enqueued[0])
        return status if status.status == "COMPLETED" else None

    status = wait_until(completed, timeout=10, interval=0.1,
                        message="the timed-out request to end")
    assert status.error_type == "request_cancelled"
    with pytest.raises(ApiError):
        client.queue.result("fal-ai/fast-sdxl", enqueued[0])


@pytest.mark.parametrize("mode", ["polling", "streaming"])
def test_subscribe_timeout_in_either_mode(slow_runtime, mode):
    client = FalClient(hosts=Hosts(slow_runtime.url), poll_interval=0.05)
    sent = []
    client.transport.session.hooks["response"].append(
        lambda r, *a, **k: sent.append((r.request.method, r.request.url)))
    with pytest.raises(FalTimeoutError):
        client.subscribe("fal-ai/fast-sdxl", {"prompt": "x", "num_inference_steps": 50},
                         timeout=0.5, mode=mode, logs=True)
    assert sent[-1][0] == "PUT" and sent[-1][1].endswith("/cancel")
    count = len(sent)
    time.sleep(0.3)
    assert len(sent) == count  # nothing keeps polling in the background


# -- queue -----------------------------------------------------------------------------------------


def test_cancel_a_queued_request_and_read_the_answer_codes(slow_runtime):
    client = FalClient(hosts=Hosts(slow_runtime.url))
    first = client.queue.submit("fal-ai/fast-sdxl", {"prompt": "busy", "num_inference_steps": 30})
    second = client.queue.submit("fal-ai/fast-sdxl", {"prompt": "waiting", **SMALL})
    assert second.queue_position >= 0
    assert second.cancel() == "CANCELLATION_REQUESTED"
    assert first.cancel() == "CANCELLATION_REQUESTED"
    final = client.queue.subscribe_to_status("fal-ai/fast-sdxl", second.request_id,
                                             poll_interval=0.05, timeout=10)
    assert final.error_type == "request_cancelled"
    with pytest.raises(ApiError) as info:
        second.cancel()
    assert info.value.status == 400 and info.value.body == {"status": "ALREADY_COMPLETED"}
    with pytest.raises(ApiError) as info:
        client.queue.cancel("fal-ai/fast-sdxl", "00000000-0000-0000-0000-000000000000")
    assert info.value.status == 404


def test_submit_handle_and_sub_path_endpoints(fal_client, tmp_path):
    handle = fal_client.queue.submit("fal-ai/fast-sdxl/image-to-image",
                                     {"prompt": "x", "image_url": _png_data_uri(), **SMALL},
                                     priority="low", hint="lora-a", start_timeout=30)
    assert handle.status_url.endswith(f"/fal-ai/fast-sdxl/requests/{handle.request_id}/status")
    result = handle.get(poll_interval=0.02)
    assert result.request_id == handle.request_id and result["images"]


def test_stream_status(fal_client):
    handle = fal_client.submit("fal-ai/fast-sdxl", {"prompt": "x", **SMALL})
    with fal_client.stream_status("fal-ai/fast-sdxl", handle.request_id, logs=True) as events:
        final = events.done()
    assert final["status"] == "COMPLETED"


def test_run_sync_mode_returns_data_uris(fal_client):
    result = fal_client.run("fal-ai/fast-sdxl", {"prompt": "x", "sync_mode": True, **SMALL})
    assert result["images"][0]["url"].startswith("data:image/")


def test_concurrent_calls_share_one_client(fal_client):
    results, errors = [], []

    def work(i):
        try:
            results.append(fal_client.subscribe("fal-ai/fast-sdxl",
                                                {"prompt": f"cat {i}", **SMALL}).request_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(set(results)) == 6


# -- errors ----------------------------------------------------------------------------------------


def test_422_field_errors_name_the_field(fal_client):
    with pytest.raises(ValidationError) as info:
        fal_client.subscribe("fal-ai/fast-sdxl", {"prompt": "x", "num_inference_steps": "many"})
    assert "num_inference_steps" in info.value.fields
    assert info.value.get_field_errors("num_inference_steps")
    with pytest.raises(ValidationError) as info:
        fal_client.run("fal-ai/fast-sdxl", {})
    assert info.value.get_field_errors("prompt")[0]["loc"] == ["body", "prompt"]


def test_environment_key_is_not_sent_to_a_local_runtime(local_runtime, monkeypatch):
    seen = []
    monkeypatch.setenv("FAL_KEY", "real-fal-key")
    client = FalClient(hosts=Hosts(local_runtime.url))
    client.transport.session.hooks["response"].append(
        lambda r, *a, **k: seen.append(r.request.headers.get("Authorization")))
    client.run("fal-ai/fast-sdxl", {"prompt": "x", **SMALL})
    assert seen == [None]


def test_falweb_local_url_picks_the_local_runtime(local_runtime, monkeypatch):
    monkeypatch.setenv("FALWEB_LOCAL_URL", local_runtime.url)
    client = FalClient()
    assert client.hosts.is_local
    assert client.run("fal-ai/fast-sdxl", {"prompt": "x", **SMALL})["images"]


def _png_data_uri():
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
