"""One suite for both clients: every call of :class:`FalClient` and :class:`AsyncClient`
against the local runtime over real sockets (the proxy in front where it says so).

The async client runs on an event loop in a thread of its own; :class:`Synced` awaits each
call there, so one test body reads the same for both clients and asserts what a caller of
either one observes.
"""

import asyncio
import inspect
import io
import pathlib
import socket
import threading
import time

import pytest
import requests
from flask import Flask
from flask import jsonify
from flask import request
from PIL import Image

import falweb.client.storage_api as storage_api
from falweb.client import ApiError
from falweb.client import AsyncClient
from falweb.client import FalClient
from falweb.client import FalConnectionError
from falweb.client import FalTimeoutError
from falweb.client import MissingCredentialsError
from falweb.client import QueueStatus
from falweb.client import RetryPolicy
from falweb.client import ValidationError
from falweb.client import encode_file
from falweb.client import encode_image
from falweb.hosts import Hosts
from falweb.testing import ServerThread
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until

SMALL = {"image_size": {"width": 64, "height": 64}, "num_inference_steps": 2}
KIND = ["sync", "async"]

pytestmark = pytest.mark.usefixtures("no_fal_env")


# -- running the async client from a test ---------------------------------------------------------


class Loop:
    """An event loop in a thread; ``run(coro)`` waits for a coroutine's result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Synced:
    """A blocking view of an async-client object: every method runs on the loop and is
    awaited; async iterators iterate; ``with`` uses ``async with``."""

    def __init__(self, target, loop):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_loop", loop)

    def _wrap(self, value):
        if isinstance(value, str | bytes | int | float | dict | list | tuple | type(None)):
            return value
        if type(value).__module__.startswith("falweb.client") and not isinstance(
                value, QueueStatus | Exception):
            return Synced(value, self._loop)
        return value

    def __getattr__(self, name):
        value = getattr(self._target, name)
        if not callable(value):
            return self._wrap(value)

        def call(*args, **kwargs):
            async def invoke():
                result = value(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result

            result = self._loop.run(invoke())
            if inspect.isasyncgen(result):
                return self._iterate(result)
            return self._wrap(result)

        return call

    def _iterate(self, aiterator):
        while True:
            try:
                yield self._wrap(self._loop.run(anext(aiterator)))
            except StopAsyncIteration:
                return

    def __iter__(self):
        return self._iterate(self._target.__aiter__())

    def __getitem__(self, key):
        return self._target[key]

    def __enter__(self):
        if hasattr(self._target, "__aenter__"):
            self._loop.run(self._target.__aenter__())
        return self

    def __exit__(self, *exc):
        self._loop.run(self._target.__aexit__(*exc))


@pytest.fixture(scope="module")
def loop():
    made = Loop()
    yield made
    made.close()


@pytest.fixture
def make(request, loop):
    """``make(**settings)``: a client of this test's kind (sync or async), closed after."""
    made = []

    def build(**settings):
        if request.param == "sync":
            client = FalClient(**settings)
        else:
            client = Synced(loop.run(_async_client(settings)), loop)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


async def _async_client(settings):
    return AsyncClient(**settings)


def both(function):
    """Run ``function`` once with each client (its ``make`` fixture)."""
    return pytest.mark.parametrize("make", KIND, indirect=True)(function)


@pytest.fixture
def fal(make, shared_runtime):
    return make(hosts=Hosts(shared_runtime.url), poll_interval=0.02)


@pytest.fixture(scope="module")
def slow_runtime(tmp_path_factory):
    """A runtime whose steps take 0.2 s, so a request can be caught while it runs."""
    with serve_local_runtime({"TESTING": True, "FALWEB_LOCAL_STEP_DELAY": 0.2,
                              "FALWEB_LOCAL_WORKERS": 1,
                              "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("slow"))}
                             ) as server:
        yield server


def png(color=(200, 30, 30), size=(32, 32)):
    return Image.new("RGB", size, color)


# -- subscribe -------------------------------------------------------------------------------------


@both
@pytest.mark.parametrize("mode", ["polling", "streaming"])
def test_subscribe_updates_logs_and_request_id(fal, mode):
    enqueued, updates = [], []
    result = fal.subscribe("fal-ai/fast-sdxl", {"prompt": "a cat", **SMALL}, logs=True,
                           mode=mode, on_enqueue=enqueued.append,
                           on_queue_update=updates.append)
    assert enqueued == [result.request_id]
    assert updates[-1].status == "COMPLETED"
    assert all(update.request_id == result.request_id for update in updates)
    messages = [line["message"] for line in updates[-1].logs]
    assert any("2/2" in m for m in messages)
    assert len(messages) == len(set(messages))  # cumulative, never repeated
    assert result["images"][0]["width"] == 64 and result["prompt"] == "a cat"


@pytest.mark.parametrize("make", ["async"], indirect=True)
def test_async_callbacks_may_be_coroutines(make, shared_runtime):
    fal = make(hosts=Hosts(shared_runtime.url), poll_interval=0.02)
    seen = []

    async def on_queue_update(status):
        await asyncio.sleep(0)
        seen.append(status.status)

    fal.subscribe("fal-ai/fast-sdxl", {"prompt": "x", **SMALL}, on_queue_update=on_queue_update)
    assert seen[-1] == "COMPLETED"


@both
@pytest.mark.parametrize("mode", ["polling", "streaming"])
def test_subscribe_timeout_cancels_the_request(make, slow_runtime, mode):
    fal = make(hosts=Hosts(slow_runtime.url), poll_interval=0.05)
    enqueued = []
    with pytest.raises(FalTimeoutError) as info:
        fal.subscribe("fal-ai/fast-sdxl", {"prompt": "x", "num_inference_steps": 50},
                      timeout=0.5, mode=mode, on_enqueue=enqueued.append)
    assert info.value.request_id == enqueued[0]
    status = wait_until(lambda: _completed(fal, enqueued[0]), timeout=15, interval=0.1,
                        message="the timed-out request to end")
    assert status.error_type == "request_cancelled"


def _completed(fal, request_id):
    status = fal.status("fal-ai/fast-sdxl", request_id)
    return status if status.status == "COMPLETED" else None


# -- queue and handles -----------------------------------------------------------------------------


@both
def test_queue_submit_status_stream_status_result(fal):
    handle = fal.queue.submit("fal-ai/flux/dev", {"prompt": "a cat", "seed": 7, **SMALL},
                              priority="low", hint="warm")
    assert handle.status_url.endswith(f"/fal-ai/flux/requests/{handle.request_id}/status")
    assert isinstance(fal.queue.status("fal-ai/flux/dev", handle.request_id), QueueStatus)
    with fal.stream_status("fal-ai/flux/dev", handle.request_id, logs=True) as events:
        assert events.done()["status"] == "COMPLETED"
    result = fal.queue.result("fal-ai/flux/dev", handle.request_id)
    assert result.request_id == handle.request_id and result["seed"] == 7


@both
def test_handle_iter_events_ends_with_the_final_status(fal):
    fal.config(poll_interval=0.02)
    handle = fal.submit("fal-ai/fast-sdxl", {"prompt": "x", **SMALL})
    with handle.stream_status(logs=True) as events:
        assert events.done()["status"] == "COMPLETED"
    handle = fal.submit("fal-ai/fast-sdxl", {"prompt": "x", **SMALL})
    statuses = list(handle.iter_events(with_logs=True, interval=0.02))
    assert statuses[-1].status == "COMPLETED"
    assert all(s.status in ("IN_QUEUE", "IN_PROGRESS") for s in statuses[:-1])
    assert handle.get()["images"] and handle.fetch_result().request_id == handle.request_id


@both
def test_result_with_a_timeout_leaves_the_request_running(make, slow_runtime):
    fal = make(hosts=Hosts(slow_runtime.url), poll_interval=0.05)
    handle = fal.submit("fal-ai/fast-sdxl", {"prompt": "x", **SMALL, "num_inference_steps": 8})
    with pytest.raises(FalTimeoutError) as info:
        handle.result(timeout=0.3)
    assert info.value.request_id == handle.request_id
    result = handle.get(timeout=30)  # it was not cancelled: waiting again gets the output
    assert result["images"] and result.request_id == handle.request_id


@both
def test_get_handle_and_cancel_answers(make, slow_runtime):
    fal = make(hosts=Hosts(slow_runtime.url), poll_interval=0.05)
    busy = fal.submit("fal-ai/fast-sdxl", {"prompt": "busy", "num_inference_steps": 30})
    waiting = fal.submit("fal-ai/fast-sdxl", {"prompt": "waiting", **SMALL})
    again = fal.get_handle("fal-ai/fast-sdxl", waiting.request_id)
    assert again.cancel() == "CANCELLATION_REQUESTED"
    assert busy.cancel() == "CANCELLATION_REQUESTED"
    final = fal.queue.subscribe_to_status("fal-ai/fast-sdxl", waiting.request_id, timeout=15)
    assert final.error_type == "request_cancelled"
    with pytest.raises(ApiError) as info:
        fal.cancel("fal-ai/fast-sdxl", waiting.request_id)
    assert info.value.status == 400 and info.value.body == {"status": "ALREADY_COMPLETED"}


@both
def test_webhook_url_reaches_the_receiver(fal, shared_runtime):
    received = []
    receiver = Flask("receiver")

    @receiver.post("/hook")
    def hook():
        received.append(request.get_json())
        return "", 204

    with ServerThread(receiver) as server:
        # A loopback receiver: the runtime delivers there only once allowed.
        shared_runtime.runtime.allow_webhook_prefix(f"{server.url}/hook")
        result = fal.subscribe("fal-ai/fast-sdxl", {"prompt": "x", **SMALL},
                               webhook_url=f"{server.url}/hook")
        wait_until(lambda: received, timeout=10, interval=0.05, message="the webhook delivery")
    assert received[0]["request_id"] == result.request_id and received[0]["status"] == "OK"


# -- run and errors --------------------------------------------------------------------------------


@both
def test_run_and_its_errors(fal):
    result = fal.run("fal-ai/fast-lcm-diffusion", {"prompt": "a cat", **SMALL})
    assert result["images"][0]["url"] and result.request_id
    result = fal.run("fal-ai/fast-sdxl", {"prompt": "by query", "num_inference_steps": 2},
                     method="get")
    assert result["prompt"] == "by query"
    with pytest.raises(ValidationError) as info:
        fal.run("fal-ai/fast-sdxl", {"prompt": "x", "num_images": "lots"})
    assert "num_images" in info.value.fields
    with pytest.raises(ApiError) as info:
        fal.subscribe("fal-ai/does-not-exist", {"prompt": "x"})
    assert info.value.status == 404 and "does-not-exist" in info.value.message
    with pytest.raises(ApiError) as info:
        fal.result("fal-ai/fast-sdxl", "00000000-0000-0000-0000-000000000000")
    assert info.value.status == 404


@both
def test_an_unreachable_backend_is_a_connection_error_without_the_key(make):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    fal = make(hosts=Hosts(f"http://127.0.0.1:{port}"), credentials="sekrit-key")
    with pytest.raises(FalConnectionError) as info:
        fal.subscribe("fal-ai/fast-sdxl", {"prompt": "x"})
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "sekrit" not in str(info.value) and "sekrit" not in repr(info.value)


@both
def test_missing_credentials_for_fal_itself_is_a_clear_error(make):
    fal = make()  # no key, no proxy, no local runtime: fal itself, which needs a key
    with pytest.raises(MissingCredentialsError, match="FAL_KEY"):
        fal.run("fal-ai/fast-sdxl", {"prompt": "x"})


@pytest.fixture
def flaky_fal():
    """A stand-in for fal itself (the one thing tests may fake): every status GET answers
    503 twice before the truth, every POST 503 once."""
    app = Flask("flaky")
    calls = []

    @app.route("/<path:path>", methods=["GET", "POST"])
    def answer(path):
        calls.append((request.method, path))
        if request.method == "POST":
            return jsonify(detail="busy"), 503
        if sum(1 for method, _ in calls if method == "GET") <= 2:
            return jsonify(detail="busy"), 503, {"Retry-After": "0"}
        return jsonify(status="COMPLETED", request_id="r1", logs=None,
                       response_url="x", status_url="x", cancel_url="x")

    with ServerThread(app) as server:
        server.calls = calls
        yield server


@both
def test_gets_are_retried_and_posts_never(make, flaky_fal):
    fal = make(hosts=Hosts(flaky_fal.url), retry=RetryPolicy(base_delay=0.01))
    assert fal.status("fal-ai/x", "r1").status == "COMPLETED"
    assert [method for method, _ in flaky_fal.calls] == ["GET", "GET", "GET"]
    with pytest.raises(ApiError) as info:
        fal.submit("fal-ai/x", {"prompt": "x"})
    assert info.value.status == 503
    assert [method for method, _ in flaky_fal.calls].count("POST") == 1


# -- stream ----------------------------------------------------------------------------------------


@both
@pytest.mark.parametrize("connection_mode", ["server", "client"])
def test_stream(fal, connection_mode):
    stream = fal.stream("fal-ai/flux/dev", {"prompt": "a cat", "seed": 5,
                                            "num_inference_steps": 3, **SMALL},
                        connection_mode=connection_mode, token_expiration=30)
    events = list(stream)
    assert len(events) >= 2 and events[-1]["images"] and events[-1]["seed"] == 5
    assert stream.request_id


@both
def test_client_mode_stream_sends_a_token_and_no_key(make, local_runtime):
    # The token, not the key, opens a client-mode stream: a bad one is refused.
    fal = make(hosts=Hosts(local_runtime.url))
    seen = []

    def provider(app_path):
        seen.append(app_path)
        return "not-a-token"

    with pytest.raises(ApiError) as info:
        fal.stream("fal-ai/flux/dev", {"prompt": "x", **SMALL}, connection_mode="client",
                   token_provider=provider)
    assert info.value.status == 401 and seen == ["fal-ai/flux/dev/stream"]
    stream = fal.stream("fal-ai/flux/dev", {"prompt": "x", **SMALL}, connection_mode="client")
    assert stream.done()["images"]


@both
def test_stream_with_a_bad_input_raises_the_validation_error(fal):
    with pytest.raises(ValidationError) as info:
        fal.stream("fal-ai/flux/dev", {"prompt": "x", "num_inference_steps": "many"})
    assert "num_inference_steps" in info.value.fields


# -- storage ---------------------------------------------------------------------------------------


def fetch(url):
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response


@both
def test_uploads_of_bytes_paths_files_and_images(fal, tmp_path):
    assert fetch(fal.storage.upload(b"Hello, World!", "text/plain", "hello.txt")).content == \
        b"Hello, World!"
    path = tmp_path / "notes.txt"
    path.write_bytes(b"from a path")
    response = fetch(fal.upload_file(path))
    assert response.content == b"from a path"
    assert response.headers["Content-Type"].startswith("text/plain")
    with open(path, "rb") as file:
        file.seek(5)
        assert fetch(fal.upload(file)).content == b"a path"
    response = fetch(fal.upload_image(png(), format="png"))
    assert response.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (32, 32)


@both
def test_binary_inputs_are_uploaded_automatically(fal):
    buffer = io.BytesIO()
    png((10, 200, 10), (64, 64)).save(buffer, format="PNG")
    transformed = fal.storage.transform_input({"a": [b"one", "data:text/plain;base64,AA=="]})
    assert fetch(transformed["a"][0]).content == b"one"
    assert transformed["a"][1] == "data:text/plain;base64,AA=="  # strings pass untouched
    for image in (buffer.getvalue(), png((10, 200, 10), (64, 64))):
        result = fal.run("fal-ai/fast-sdxl/image-to-image",
                         {"prompt": "x", "image_url": image, **SMALL})
        assert result["images"][0]["width"] == 64


@both
def test_multipart_upload_round_trip(fal, monkeypatch, tmp_path):
    monkeypatch.setattr(storage_api, "MULTIPART_THRESHOLD", 1024)
    monkeypatch.setattr(storage_api, "MULTIPART_CHUNK_SIZE", 1000)
    data = bytes(range(256)) * 20
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert fetch(fal.upload(path)).content == data
    assert fetch(fal.upload(data, "application/octet-stream")).content == data


@both
def test_a_file_is_uploaded_with_its_length_not_chunked(make, tmp_path):
    # fal's storage stands in here: signed upload URLs may refuse a chunked body.
    app = Flask("storage")
    puts = []

    @app.post("/rest/storage/upload/initiate")
    def initiate():
        return jsonify(upload_url=f"{request.host_url}upload", file_url="https://x/y")

    @app.put("/upload")
    def upload():
        puts.append((request.headers.get("Content-Length"),
                     request.headers.get("Transfer-Encoding"), request.get_data()))
        return "", 200

    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 5000)
    with ServerThread(app) as server:
        fal = make(hosts=Hosts(server.url))
        with open(path, "rb") as file:
            file.seek(1000)
            assert fal.upload(file) == "https://x/y"
    assert puts == [("4000", None, b"x" * 4000)]


def test_data_uri_helpers(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"hi")
    assert encode_file(path) == "data:text/plain;base64,aGk="
    odd = pathlib.Path(tmp_path / "blob.nosuchtype")
    odd.write_bytes(b"\x00")
    assert encode_file(odd) == "data:application/octet-stream;base64,AA=="
    uri = encode_image(Image.new("RGBA", (4, 4)), "jpeg")
    assert uri.startswith("data:image/jpeg;base64,")
    with pytest.raises(ValueError, match="format"):
        encode_image(png(), "tiff")


# -- proxy mode ------------------------------------------------------------------------------------


@both
@pytest.mark.parametrize("mode", ["polling", "streaming"])
def test_through_the_proxy(make, live_server, mode):
    # hosts: where a client-mode stream goes straight to (fal itself, in production).
    fal = make(proxy_url=live_server.url + "/api/fal/proxy", poll_interval=0.02,
               hosts=Hosts(live_server.url + "/local"))
    updates = []
    result = fal.subscribe("fal-ai/fast-sdxl", {"prompt": "a cat", **SMALL}, mode=mode,
                           on_queue_update=updates.append)
    assert updates[-1].status == "COMPLETED" and result["images"]
    for connection_mode in ("server", "client"):
        stream = fal.stream("fal-ai/fast-sdxl", {"prompt": "x", **SMALL},
                            connection_mode=connection_mode)
        assert stream.done()["images"]
    assert fetch(fal.upload(b"via proxy", "text/plain")).content == b"via proxy"
    assert fal.realtime.get_temporary_auth_token("fal-ai/fast-lcm-diffusion").count(".") == 2
    # Realtime: the token through the proxy, the socket straight to the backend.
    with fal.realtime.connect("fal-ai/fast-lcm-diffusion") as connection:
        connection.send(lcm("via proxy"))
        assert connection.recv(timeout=20)["prompt"] == "via proxy"


# -- realtime --------------------------------------------------------------------------------------


class Relay:
    """A TCP relay on a free loopback port in front of ``target_port``: what a network
    between client and server is, with ``kill()`` cutting every connection at once."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sockets = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def kill(self):
        with self.lock:
            cut, self.sockets = self.sockets, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self.listener.close()
        self.kill()
        self.thread.join(5)


@pytest.fixture
def relayed(tmp_path):
    """A runtime behind a :class:`Relay` (``.relay``); it answers to the relay's Host too."""
    with serve_local_runtime({"TESTING": True, "FALWEB_LOCAL_STEP_DELAY": 0.0,
                              "FALWEB_INSTANCE_PATH": str(tmp_path / "relayed"),
                              "FALWEB_LOCAL_ALLOWED_HOSTS": ["*"]}) as server:
        relay = Relay(int(server.url.rsplit(":", 1)[1]))
        server.relay = relay
        yield server
        relay.close()


def lcm(prompt):
    return {"prompt": prompt, "num_inference_steps": 1, "sync_mode": True,
            "image_size": {"width": 64, "height": 64}}


@both
def test_realtime_callbacks_iterator_and_state(fal):
    results, errors = [], []
    connection = fal.realtime.connect("fal-ai/fast-lcm-diffusion", on_result=results.append,
                                      on_error=errors.append, throttle_interval=0)
    with connection:
        assert connection.state == "idle"
        connection.send(lcm("a cat"))
        output = connection.recv(timeout=20)
        assert output["images"] and output["prompt"] == "a cat"
        assert connection.state == "open"
        connection.send(lcm("a dog"))
        assert connection.recv(timeout=20)["prompt"] == "a dog"
    assert connection.state == "closed"
    assert list(connection) == []  # the iterator ends once closed
    assert [r["prompt"] for r in results] == ["a cat", "a dog"] and errors == []
    with pytest.raises(Exception, match="closed"):
        connection.send(lcm("too late"))


@both
def test_realtime_throttle_sends_the_latest_input(fal):
    with fal.realtime.connect("fal-ai/fast-lcm-diffusion", throttle_interval=0.5) as connection:
        # Before the socket opens only the newest input is kept; open it first.
        connection.send(lcm("warm-up"))
        assert connection.recv(timeout=20)["prompt"] == "warm-up"
        time.sleep(0.6)  # a quiet spell longer than the interval
        for i in range(10):
            connection.send(lcm(f"p{i}"))
        prompts = []
        while "p9" not in prompts:
            prompts.append(connection.recv(timeout=20)["prompt"])
    # The first input goes at once (leading edge); the rest collapse into the last one.
    assert prompts == ["p0", "p9"]


@both
def test_realtime_survives_a_killed_connection(make, relayed):
    fal = make(hosts=Hosts(relayed.relay.url))
    errors = []
    with fal.realtime.connect("fal-ai/fast-lcm-diffusion", on_error=errors.append,
                              throttle_interval=0) as connection:
        connection.send(lcm("before"))
        assert connection.recv(timeout=20)["prompt"] == "before"
        relayed.relay.kill()
        wait_until(lambda: errors, timeout=10, message="the lost connection to be reported")
        connection.send(lcm("after"))
        assert connection.recv(timeout=20)["prompt"] == "after"
        assert connection.state == "open"
    assert all(getattr(e, "status", None) != 401 for e in errors)


@pytest.mark.slow
@both
def test_realtime_survives_a_token_that_expires_mid_session(make, relayed):
    fal = make(hosts=Hosts(relayed.relay.url))
    errors = []
    with fal.realtime.connect("fal-ai/fast-lcm-diffusion", on_error=errors.append,
                              throttle_interval=0, token_expiration=2) as connection:
        connection.send(lcm("first"))
        assert connection.recv(timeout=20)["prompt"] == "first"
        time.sleep(2.5)  # the first token has expired; the session still runs
        connection.send(lcm("second"))
        assert connection.recv(timeout=20)["prompt"] == "second"
        relayed.relay.kill()  # reconnecting needs a token valid now
        wait_until(lambda: errors, timeout=10, message="the lost connection to be reported")
        connection.send(lcm("third"))
        assert connection.recv(timeout=20)["prompt"] == "third"
    # A stale token would have been refused ("Unauthorized", 401) before a fresh one helped.
    assert [e for e in errors if getattr(e, "status", None) == 401] == []


@both
def test_realtime_reports_a_refused_token(fal):
    errors = []
    with fal.realtime.connect("fal-ai/fast-lcm-diffusion", on_error=errors.append,
                              token_provider=lambda app_path: "not-a-token") as connection:
        connection.send(lcm("x"))
        wait_until(lambda: any(getattr(e, "status", None) == 401 for e in errors),
                   timeout=10, message="the refused token to be reported")
    assert connection.state == "closed"
