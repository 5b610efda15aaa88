"""The client in proxy mode through falweb's own proxy blueprint, and realtime, over real
sockets: every call goes to ``/api/fal/proxy`` with the fal URL in ``x-fal-target-url``;
storage PUTs and the realtime socket go straight to the backend."""

import threading

import pytest
import requests

from falweb.client import FalClient
from falweb.client import ValidationError
from falweb.hosts import Hosts

pytest.importorskip("falweb.proxy")

SMALL = {"image_size": {"width": 64, "height": 64}, "num_inference_steps": 2}


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_LOCAL_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxied(live_server):
    client = FalClient(proxy_url=live_server.url + "/api/fal/proxy", poll_interval=0.02)
    sent = []
    client.transport.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    client.sent = sent
    yield client
    client.close()


@pytest.mark.parametrize("mode", ["polling", "streaming"])
def test_subscribe_through_the_proxy(proxied, live_server, mode):
    updates = []
    result = proxied.subscribe("fal-ai/fast-sdxl", {"prompt": "a cat", **SMALL}, logs=True,
                               mode=mode, on_queue_update=updates.append)
    assert updates[-1].status == "COMPLETED" and result["images"]
    assert result.request_id == updates[-1].request_id
    proxy = live_server.url + "/api/fal/proxy"
    assert all(r.url == proxy for r in proxied.sent)
    targets = [r.headers["x-fal-target-url"] for r in proxied.sent]
    assert targets[0] == "https://queue.fal.run/fal-ai/fast-sdxl"
    assert targets[-1] == f"https://queue.fal.run/fal-ai/fast-sdxl/requests/{result.request_id}"


def test_run_stream_and_errors_through_the_proxy(proxied):
    assert proxied.run("fal-ai/fast-sdxl", {"prompt": "x", **SMALL}).request_id
    with proxied.stream("fal-ai/fast-sdxl", {"prompt": "x", **SMALL}) as stream:
        assert stream.done()["images"]
    with pytest.raises(ValidationError) as info:
        proxied.run("fal-ai/fast-sdxl", {"prompt": "x", "num_images": "lots"})
    assert "num_images" in info.value.fields


def test_upload_through_the_proxy_puts_directly(proxied, live_server):
    url = proxied.storage.upload(b"Hello, World!", "text/plain", "hello.txt")
    assert requests.get(url, timeout=10).content == b"Hello, World!"
    initiate, put = proxied.sent
    assert initiate.headers["x-fal-target-url"] == \
        "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"
    assert not put.url.startswith(live_server.url + "/api/fal/proxy")
    assert "x-fal-target-url" not in put.headers and "Authorization" not in put.headers


def test_realtime_connect_against_the_local_runtime(local_runtime):
    client = FalClient(hosts=Hosts(local_runtime.url))
    results, errors = [], []
    got = threading.Event()

    def on_result(output):
        results.append(output)
        got.set()

    with client.realtime.connect("fal-ai/fast-lcm-diffusion", on_result=on_result,
                                 on_error=errors.append) as connection:
        connection.send({"prompt": "a cat", "num_inference_steps": 2,
                         "image_size": {"width": 64, "height": 64}, "sync_mode": True})
        assert got.wait(15), errors
    assert errors == []
    assert results[0]["images"]


def test_realtime_token_through_the_proxy(proxied):
    token = proxied.realtime.get_temporary_auth_token("fal-ai/fast-lcm-diffusion")
    assert token.count(".") == 2
    assert proxied.sent[0].headers["x-fal-target-url"] == "https://rest.fal.ai/tokens/"
