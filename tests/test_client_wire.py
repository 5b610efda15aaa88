"""What the client puts on the wire for fal itself (fal-protocol §1–§10, §14 test vectors).

fal.ai cannot be reached from tests, so this is the one place with a fake transport: a
``requests`` adapter that records every request and answers with canned fal responses.
Everything else runs against the local runtime over real sockets.
"""

import io
import json

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter
from requests.adapters import HTTPAdapter

from falweb.client import ApiError
from falweb.client import FalClient
from falweb.client import FalTimeoutError
from falweb.client import InvalidEndpointError
from falweb.client import MissingCredentialsError
from falweb.client import RetryPolicy
from falweb.client import ValidationError
from falweb.client import storage_api as storage_module
from falweb.client.endpoints import ensure_endpoint_id_format
from falweb.client.endpoints import parse_endpoint_id
from falweb.client.transport import USER_AGENT
from falweb.hosts import Hosts

KEY = "test-key-id:test-key-secret-0123456789abcdef"
RID = "80e732af-660e-45cd-bd63-580e4f2a94cc"
PROXY = "https://example.com/api/fal/proxy"

_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
            422: "Unprocessable Entity", 500: "Internal Server Error",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class Recorder(BaseAdapter):
    """Records each prepared request; answers with ``handler(request)`` →
    ``(status, headers, body)`` (a dict/list/str body is sent as JSON)."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.requests = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        assert timeout is not None, "every request must carry a timeout"
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        request.recorded_body = body
        request.recorded_timeout = timeout
        self.requests.append(request)
        status, headers, payload = self.handler(request)
        headers = dict(headers or {})
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        raw = urllib3.HTTPResponse(body=io.BytesIO(payload), headers=headers, status=status,
                                   reason=_REASONS.get(status, ""), preload_content=False)
        return HTTPAdapter().build_response(request, raw)

    def close(self):
        pass

    @property
    def calls(self):
        return [(r.method, r.url) for r in self.requests]


def queue_body(status="IN_QUEUE", **extra):
    base = f"https://queue.fal.run/fal-ai/flux/requests/{RID}"
    return {"status": status, "request_id": RID, "response_url": base,
            "status_url": base + "/status", "cancel_url": base + "/cancel", **extra}


def default_handler(request):
    url = request.url
    if url.startswith("https://queue.fal.run/") and request.method == "POST":
        return 200, {}, queue_body(queue_position=0)
    if url.endswith("/status?logs=0") or url.endswith("/status?logs=1"):
        return 200, {}, queue_body("COMPLETED", logs=[], metrics={"inference_time": 1.5})
    if url.endswith("/cancel"):
        return 202, {}, {"status": "CANCELLATION_REQUESTED"}
    if "/requests/" in url:
        return 200, {"x-fal-request-id": RID}, {"images": [{"url": "https://v3.fal.media/x"}]}
    if url.startswith("https://fal.run/"):
        return 200, {"x-fal-request-id": "run-1"}, {"seed": 42}
    raise AssertionError(f"unexpected request {request.method} {url}")


def make(handler=default_handler, **options):
    recorder = Recorder(handler)
    session = requests.Session()
    session.mount("https://", recorder)
    session.mount("http://", recorder)
    options.setdefault("credentials", KEY)
    client = FalClient(hosts=Hosts(), session=session,
                       retry=RetryPolicy(base_delay=0.001, jitter=False), **options)
    return client, recorder


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_LOCAL_URL"):
        monkeypatch.delenv(name, raising=False)


# -- endpoint ids (§1.2, §1.3, §14) ----------------------------------------------------------


def test_endpoint_id_vectors():
    assert ensure_endpoint_id_format("fal-ai/fast-sdxl") == "fal-ai/fast-sdxl"
    assert ensure_endpoint_id_format("110602490-lora") == "110602490/lora"
    assert ensure_endpoint_id_format("110602490-sdxl-turbo") == "110602490/sdxl-turbo"
    for bad in ("just-an-id", "my_app", "12345"):
        with pytest.raises(InvalidEndpointError, match="Invalid app id"):
            ensure_endpoint_id_format(bad)
    parsed = parse_endpoint_id("fal-ai/fast-sdxl/image-to-image")
    assert (parsed.owner, parsed.alias, parsed.path, parsed.namespace) == \
        ("fal-ai", "fast-sdxl", "image-to-image", None)
    parsed = parse_endpoint_id("workflows/fal-ai/fast-sdxl")
    assert (parsed.owner, parsed.alias, parsed.namespace) == ("fal-ai", "fast-sdxl", "workflows")
    assert parse_endpoint_id("comfy/acme/wf/sub").app_base == "comfy/acme/wf"
    assert parse_endpoint_id("fal-ai/flux-lora/image-to-image/x").path == "image-to-image/x"


def test_unsafe_endpoint_ids_are_refused_before_any_request():
    client, recorder = make()
    for bad in ("fal-ai/../admin", "fal-ai/x?y=1", "fal-ai//x", "fal-ai/x#frag", "a b/c"):
        with pytest.raises(InvalidEndpointError):
            client.run(bad, {})
    assert recorder.requests == []


# -- queue (§4, §14) -------------------------------------------------------------------------


def test_submit_request_matches_the_protocol():
    client, recorder = make()
    handle = client.queue.submit("fal-ai/flux/dev", {"prompt": "a cat"},
                                 webhook_url="https://x.y/h")
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url == "https://queue.fal.run/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fx.y%2Fh"
    assert request.headers["Authorization"] == f"Key {KEY}"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["x-fal-queue-priority"] == "normal"
    assert "x-fal-runner-hint" not in request.headers
    assert "x-fal-target-url" not in request.headers
    assert json.loads(request.recorded_body) == {"prompt": "a cat"}
    assert handle.request_id == RID == handle["request_id"]
    assert handle.queue_position == 0
    assert handle.status_url.endswith("/status")


def test_submit_headers_override_user_headers_and_validate_start_timeout():
    client, recorder = make()
    client.queue.submit("fal-ai/flux/dev", {"prompt": "x"}, priority="low", hint="h",
                        start_timeout=60,
                        headers={"X-Fal-Queue-Priority": "normal", "x-fal-runner-hint": "old",
                                 "x-fal-request-timeout": "10", "X-Custom": "kept"})
    headers = recorder.requests[0].headers
    assert headers["x-fal-queue-priority"] == "low"
    assert headers["x-fal-runner-hint"] == "h"
    assert headers["x-fal-request-timeout"] == "60"
    assert headers["x-custom"] == "kept"
    client.queue.submit("fal-ai/flux/dev", None, start_timeout=2.5)
    assert recorder.requests[1].headers["x-fal-request-timeout"] == "2.5"
    assert recorder.requests[1].recorded_body is None  # no input: no body (§2 step 4)
    with pytest.raises(ValueError, match="greater than 1"):
        client.queue.submit("fal-ai/flux/dev", {}, start_timeout=1)
    with pytest.raises(ValueError, match="priority"):
        client.queue.submit("fal-ai/flux/dev", {}, priority="urgent")
    assert len(recorder.requests) == 2


def test_status_result_cancel_use_the_app_base():
    client, recorder = make()
    status = client.queue.status("fal-ai/flux/dev", RID)
    assert status.status == "COMPLETED" and status.metrics == {"inference_time": 1.5}
    client.queue.status("fal-ai/flux/dev", request_id=RID, logs=True)
    result = client.queue.result("fal-ai/flux/dev", RID)
    assert client.queue.cancel("fal-ai/flux/dev", RID) == "CANCELLATION_REQUESTED"
    base = f"https://queue.fal.run/fal-ai/flux/requests/{RID}"
    assert recorder.calls == [("GET", base + "/status?logs=0"), ("GET", base + "/status?logs=1"),
                              ("GET", base), ("PUT", base + "/cancel")]
    cancel = recorder.requests[-1]
    assert cancel.recorded_body is None
    assert cancel.headers["Content-Type"] == "application/json"
    assert result.request_id == RID and result["images"][0]["url"] == "https://v3.fal.media/x"


def test_namespaced_and_legacy_ids_build_the_protocol_urls():
    client, recorder = make()
    client.queue.submit("workflows/fal-ai/my-wf", {})
    client.queue.status("workflows/fal-ai/my-wf/sub", RID)
    client.queue.submit("110602490-lora", {})
    client.queue.result("110602490-lora", RID)
    assert [url for _, url in recorder.calls] == [
        "https://queue.fal.run/workflows/fal-ai/my-wf",
        f"https://queue.fal.run/workflows/fal-ai/my-wf/requests/{RID}/status?logs=0",
        "https://queue.fal.run/110602490/lora",
        f"https://queue.fal.run/110602490/lora/requests/{RID}",
    ]


def test_subscribe_polls_until_completed_and_returns_the_request_id():
    statuses = iter([queue_body("IN_QUEUE", queue_position=1),
                     queue_body("IN_PROGRESS", logs=[{"message": "step 1"}]),
                     queue_body("COMPLETED", logs=[{"message": "step 1"}, {"message": "done"}])])

    def handler(request):
        if "/status" in request.url:
            return 202, {}, next(statuses)
        return default_handler(request)

    client, recorder = make(handler)
    updates, enqueued = [], []
    result = client.subscribe("fal-ai/flux/dev", {"prompt": "a cat"}, logs=True,
                              poll_interval=0.01, on_enqueue=enqueued.append,
                              on_queue_update=updates.append)
    assert enqueued == [RID]
    assert [u.status for u in updates] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert updates[0].queue_position == 1
    assert [log["message"] for log in updates[2].logs] == ["step 1", "done"]
    assert result.request_id == RID
    methods = [m for m, _ in recorder.calls]
    assert methods == ["POST", "GET", "GET", "GET", "GET"]
    assert all(url.endswith("?logs=1") for _, url in recorder.calls[1:4])


def test_subscribe_timeout_cancels_upstream_and_raises_with_the_request_id():
    def handler(request):
        if "/status" in request.url:
            return 202, {}, queue_body("IN_PROGRESS", logs=None)
        return default_handler(request)

    client, recorder = make(handler)
    with pytest.raises(FalTimeoutError) as info:
        client.subscribe("fal-ai/flux/dev", {"prompt": "x"}, poll_interval=0.02, timeout=0.2)
    assert info.value.request_id == RID
    assert recorder.calls[-1] == ("PUT", f"https://queue.fal.run/fal-ai/flux/requests/{RID}/cancel")
    count = len(recorder.requests)
    import time

    time.sleep(0.1)
    assert len(recorder.requests) == count  # nothing keeps polling


def test_subscribe_streaming_mode_reads_the_status_stream_and_accumulates_logs():
    events = [queue_body("IN_QUEUE", queue_position=0),
              queue_body("IN_PROGRESS", logs=[{"message": "a"}]),
              queue_body("IN_PROGRESS", logs=[{"message": "b"}]),
              queue_body("COMPLETED", logs=[])]
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()

    def handler(request):
        if request.url.endswith("/status/stream?logs=1"):
            return 200, {"Content-Type": "text/event-stream"}, sse
        return default_handler(request)

    client, recorder = make(handler)
    updates = []
    result = client.subscribe("fal-ai/flux/dev", {"prompt": "x"}, logs=True, mode="streaming",
                              on_queue_update=updates.append)
    assert [u.status for u in updates] == ["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert [log["message"] for log in updates[2].logs] == ["a", "b"]
    assert [log["message"] for log in updates[3].logs] == ["a", "b"]
    stream_request = recorder.requests[1]
    assert stream_request.method == "GET"
    assert stream_request.url == \
        f"https://queue.fal.run/fal-ai/flux/requests/{RID}/status/stream?logs=1"
    assert "text/event-stream" in stream_request.headers["Accept"]
    assert result.request_id == RID


# -- run and stream (§6, §7) -------------------------------------------------------------------


def test_run_posts_to_fal_run_and_reads_the_request_id():
    client, recorder = make()
    result = client.run("fal-ai/fast-sdxl", {"prompt": "a cat"}, start_timeout=30)
    (request,) = recorder.requests
    assert (request.method, request.url) == ("POST", "https://fal.run/fal-ai/fast-sdxl")
    assert json.loads(request.recorded_body) == {"prompt": "a cat"}
    assert request.headers["x-fal-request-timeout"] == "30"
    assert "x-fal-queue-priority" not in request.headers
    assert result == {"seed": 42} and result.request_id == "run-1" and result.data == {"seed": 42}


def test_run_with_get_puts_the_input_in_the_query():
    client, recorder = make()
    client.run("fal-ai/x", {"prompt": "a b", "n": 2, "ok": True}, method="get")
    (request,) = recorder.requests
    assert request.method == "GET" and request.recorded_body is None
    assert request.url == "https://fal.run/fal-ai/x?prompt=a+b&n=2&ok=true"


@pytest.mark.parametrize("endpoint_id", ["fal-ai/x", "fal-ai/x/stream"])
def test_stream_posts_to_the_stream_path_and_parses_events(endpoint_id):
    # CRLF line ends, a comment, an event name and a multi-byte character: all legal SSE.
    sse = ('data: {"progress": 0.5}\r\n\r\n: keep-alive\n\nevent: output\n'
           'data: {"images": [], "prompt": "caf\u00e9"}\n\n').encode()

    def handler(request):
        return 200, {"Content-Type": "text/event-stream", "x-fal-request-id": "s-1"}, sse

    client, recorder = make(handler)
    with client.stream(endpoint_id, {"prompt": "x"}) as stream:
        events = list(stream)
        assert stream.done() == {"images": [], "prompt": "caf\u00e9"}
    assert events == [{"progress": 0.5}, {"images": [], "prompt": "caf\u00e9"}]
    assert stream.request_id == "s-1"
    (request,) = recorder.requests
    assert (request.method, request.url) == ("POST", "https://fal.run/fal-ai/x/stream")
    assert "text/event-stream" in request.headers["Accept"]


# -- storage (§9) ------------------------------------------------------------------------------


def storage_handler(request):
    if request.url == "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3":
        return 200, {}, {"upload_url": "https://upload.example/put/abc?sig=1",
                         "file_url": "https://v3.fal.media/files/abc/hello.txt"}
    if request.url == \
            "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3":
        return 200, {}, {"upload_url": "https://upload.example/mp/abc?sig=1",
                         "file_url": "https://v3.fal.media/files/abc/big.bin"}
    if request.url.startswith("https://upload.example/mp/abc/complete"):
        return 200, {}, {"ok": True}
    if request.url.startswith("https://upload.example/mp/abc/"):
        number = int(request.url.split("/")[-1].split("?")[0])
        return 200, {}, {"partNumber": number, "etag": f"etag-{number}"}
    if request.url.startswith("https://upload.example/put/"):
        return 200, {}, b""
    return default_handler(request)


def test_upload_initiates_through_the_api_then_puts_directly_without_the_key():
    client, recorder = make(storage_handler)
    url = client.storage.upload(b"Hello, World!", "text/plain", "hello.txt")
    assert url == "https://v3.fal.media/files/abc/hello.txt"
    initiate, put = recorder.requests
    assert initiate.method == "POST"
    assert initiate.headers["Authorization"] == f"Key {KEY}"
    assert json.loads(initiate.recorded_body) == {"content_type": "text/plain",
                                                  "file_name": "hello.txt"}
    assert (put.method, put.url) == ("PUT", "https://upload.example/put/abc?sig=1")
    assert put.headers["Content-Type"] == "text/plain"
    assert "Authorization" not in put.headers
    assert put.recorded_body == b"Hello, World!"


def test_upload_guesses_type_and_names_like_the_js_client():
    client, recorder = make(storage_handler)
    client.storage.upload(b"\x89PNG...")
    body = json.loads(recorder.requests[0].recorded_body)
    assert body["content_type"] == "application/octet-stream"
    assert body["file_name"].endswith(".octet")
    client.storage.upload(io.BytesIO(b"x"), content_type="image/png")
    body = json.loads(recorder.requests[2].recorded_body)
    assert body["file_name"].endswith(".png")


def test_multipart_upload_sends_numbered_parts_then_complete(monkeypatch, tmp_path):
    monkeypatch.setattr(storage_module, "MULTIPART_THRESHOLD", 1000)
    monkeypatch.setattr(storage_module, "MULTIPART_CHUNK_SIZE", 400)
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 4  # 1024 bytes: parts of 400, 400, 224
    path.write_bytes(data)
    client, recorder = make(via_proxy(storage_handler), proxy_url=PROXY)
    assert client.storage.upload(path) == "https://v3.fal.media/files/abc/big.bin"
    initiate, *parts, complete = recorder.requests
    assert initiate.url == PROXY
    assert initiate.headers["x-fal-target-url"] == \
        "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3"
    assert json.loads(initiate.recorded_body) == {"content_type": "application/octet-stream",
                                                  "file_name": "big.bin"}
    assert [(p.method, p.url) for p in parts] == [
        ("PUT", f"https://upload.example/mp/abc/{n}?sig=1") for n in (1, 2, 3)]
    assert b"".join(p.recorded_body for p in parts) == data
    assert all("Authorization" not in p.headers and "x-fal-target-url" not in p.headers
               for p in parts)
    assert (complete.method, complete.url) == \
        ("POST", "https://upload.example/mp/abc/complete?sig=1")
    assert json.loads(complete.recorded_body) == {"parts": [
        {"partNumber": n, "etag": f"etag-{n}"} for n in (1, 2, 3)]}


def test_a_failing_part_is_tried_three_times(monkeypatch):
    monkeypatch.setattr(storage_module, "MULTIPART_THRESHOLD", 10)
    monkeypatch.setattr(storage_module, "MULTIPART_CHUNK_SIZE", 10)

    def handler(request):
        if request.url.startswith("https://upload.example/mp/abc/1"):
            return 503, {}, {"detail": "busy"}
        return storage_handler(request)

    client, recorder = make(handler)
    with pytest.raises(storage_module.UploadError, match="retries exhausted"):
        client.storage.upload(b"x" * 25)
    assert [url for _, url in recorder.calls].count("https://upload.example/mp/abc/1?sig=1") == 3


def test_auto_upload_replaces_nested_binary_inputs(tmp_path):
    client, recorder = make(storage_handler)
    path = tmp_path / "in.png"
    path.write_bytes(b"png")
    client.run("fal-ai/x", {"image_url": path, "masks": [b"m", {"f": io.BytesIO(b"f")}],
                            "data": "data:text/plain;base64,SGk=", "keep": "plain"})
    run = recorder.requests[-1]
    assert json.loads(run.recorded_body) == {
        "image_url": "https://v3.fal.media/files/abc/hello.txt",
        "masks": ["https://v3.fal.media/files/abc/hello.txt",
                  {"f": "https://v3.fal.media/files/abc/hello.txt"}],
        "data": "data:text/plain;base64,SGk=", "keep": "plain"}
    assert json.loads(recorder.requests[0].recorded_body)["content_type"] == "image/png"


# -- proxy mode (§3.2, §14) --------------------------------------------------------------------


def test_proxy_mode_rewrites_the_url_and_keeps_everything_else():
    client, recorder = make(default_handler_for_proxy, proxy_url=PROXY,
                            credentials=None)
    client.queue.submit("fal-ai/flux/text-to-image", {"prompt": "x"}, webhook_url="https://x.y/h")
    client.queue.status("fal-ai/flux/text-to-image", RID, logs=True)
    submit, status = recorder.requests
    assert submit.url == PROXY and submit.method == "POST"
    assert submit.headers["x-fal-target-url"] == \
        "https://queue.fal.run/fal-ai/flux/text-to-image?fal_webhook=https%3A%2F%2Fx.y%2Fh"
    assert submit.headers["x-fal-queue-priority"] == "normal"
    assert "Authorization" not in submit.headers  # the proxy adds the key
    assert json.loads(submit.recorded_body) == {"prompt": "x"}
    assert status.method == "GET" and status.url == PROXY
    assert status.headers["x-fal-target-url"] == \
        f"https://queue.fal.run/fal-ai/flux/requests/{RID}/status?logs=1"


def via_proxy(handler):
    """A handler answering proxied requests as fal would answer their target URL."""

    def answer(request):
        if request.url != PROXY:
            return handler(request)
        request.url = request.headers["x-fal-target-url"]
        try:
            return handler(request)
        finally:
            request.url = PROXY

    return answer


default_handler_for_proxy = via_proxy(default_handler)


def test_proxy_mode_keeps_configured_credentials():
    client, recorder = make(default_handler_for_proxy, proxy_url=PROXY)
    client.run("fal-ai/x", {})
    assert recorder.requests[0].headers["Authorization"] == f"Key {KEY}"


# -- retries (§2.1) ----------------------------------------------------------------------------


def test_status_is_retried_on_503_honouring_retry_after(monkeypatch):
    answers = iter([(503, {"Retry-After": "0"}, {"detail": "busy"}),
                    (502, {}, b"bad gateway"),
                    (200, {}, queue_body("COMPLETED", logs=None))])
    client, recorder = make(lambda r: next(answers))
    assert client.queue.status("fal-ai/flux", RID).status == "COMPLETED"
    assert len(recorder.requests) == 3


def test_user_timeout_504_and_posts_are_never_retried():
    client, recorder = make(lambda r: (504, {"x-fal-request-timeout-type": "user"},
                                       {"detail": "Request timed out"}))
    with pytest.raises(ApiError) as info:
        client.queue.result("fal-ai/flux", RID)
    assert info.value.is_user_timeout and len(recorder.requests) == 1
    client, recorder = make(lambda r: (503, {}, {"detail": "no runner"}))
    with pytest.raises(ApiError, match="no runner"):
        client.queue.submit("fal-ai/flux/dev", {"prompt": "x"})
    with pytest.raises(ApiError):
        client.run("fal-ai/flux/dev", {"prompt": "x"})
    assert [m for m, _ in recorder.calls] == ["POST", "POST"]


def test_connection_errors_are_retried_for_gets_only():
    attempts = []

    def handler(request):
        attempts.append(request.method)
        if len(attempts) < 3:
            raise requests.exceptions.ConnectionError("[Errno 104] Connection reset by peer")
        return default_handler(request)

    client, _ = make(handler)
    assert client.queue.status("fal-ai/flux", RID).status == "COMPLETED"
    assert attempts == ["GET", "GET", "GET"]
    attempts.clear()
    from falweb.client import FalConnectionError

    with pytest.raises(FalConnectionError, match="Cannot reach fal.run: connection reset"):
        client.run("fal-ai/x", {})
    assert attempts == ["POST"]


def test_a_refused_connection_fails_at_once_even_for_gets():
    attempts = []

    def handler(request):
        attempts.append(request.method)
        raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")

    client, _ = make(handler)
    from falweb.client import FalConnectionError

    with pytest.raises(FalConnectionError, match="Cannot reach queue.fal.run: connection refused"):
        client.queue.status("fal-ai/flux", RID)
    assert attempts == ["GET"]


# -- errors (§10, §14) -------------------------------------------------------------------------


def test_422_with_string_detail_is_a_validation_error():
    client, _ = make(lambda r: (422, {"x-fal-request-id": "r-9"}, {"detail": "bad"}))
    with pytest.raises(ValidationError) as info:
        client.run("fal-ai/x", {})
    error = info.value
    assert error.status == 422 and error.request_id == "r-9" and error.message == "bad"
    assert error.field_errors == [{"loc": ["body"], "msg": "bad", "type": "value_error"}]


def test_422_with_a_detail_list_names_the_fields():
    detail = [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
    client, _ = make(lambda r: (422, {}, {"detail": detail}))
    with pytest.raises(ValidationError) as info:
        client.run("fal-ai/x", {})
    assert info.value.message == "Unprocessable Entity"
    assert info.value.get_field_errors("prompt") == detail
    assert info.value.get_field_errors("seed") == []
    assert "prompt: field required" in str(info.value)


def test_500_text_plain_is_an_api_error_without_body():
    client, _ = make(lambda r: (500, {"Content-Type": "text/plain"}, b"oops"))
    with pytest.raises(ApiError) as info:
        client.run("fal-ai/x", {})
    assert str(info.value) == "HTTP 500: Internal Server Error"
    assert info.value.body is None and not isinstance(info.value, ValidationError)


def test_missing_credentials_is_a_clear_error_and_no_request(monkeypatch):
    client, recorder = make(credentials=None)
    with pytest.raises(MissingCredentialsError, match="FAL_KEY"):
        client.run("fal-ai/x", {})
    assert recorder.requests == []
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.setenv("FAL_KEY_SECRET", "secret")
    client.run("fal-ai/x", {})
    assert recorder.requests[0].headers["Authorization"] == "Key id:secret"
    monkeypatch.setenv("FAL_KEY", "envkey")
    client.run("fal-ai/x", {})
    assert recorder.requests[1].headers["Authorization"] == "Key envkey"


def test_the_key_never_appears_in_errors_or_reprs():
    client, _ = make(lambda r: (401, {}, {"detail": "Invalid key"}))
    with pytest.raises(ApiError) as info:
        client.run("fal-ai/x", {})
    for text in (str(info.value), repr(info.value), repr(client)):
        assert KEY not in text and "secret" not in text


def test_every_request_has_a_timeout():
    client, recorder = make(storage_handler, timeout=7)
    client.run("fal-ai/x", {"f": b"data"})
    assert all(r.recorded_timeout == (7.0, 7.0) for r in recorder.requests)


# -- realtime (§8.1, §8.2, §14) ----------------------------------------------------------------


def test_realtime_token_request_and_url():
    client, recorder = make(lambda r: (200, {}, "T"))
    assert client.realtime.get_temporary_auth_token("123-myapp") == "T"
    (request,) = recorder.requests
    assert (request.method, request.url) == ("POST", "https://rest.fal.ai/tokens/")
    assert json.loads(request.recorded_body) == {"allowed_apps": ["myapp"], "token_expiration": 120}
    connection = client.realtime.connect("123-myapp", on_result=print)
    assert connection._url() == "wss://fal.run/123/myapp/realtime?fal_jwt_token=T"
    seen = []
    custom = client.realtime.connect("123-myapp", on_result=print, path="/custom/path",
                                     token_provider=lambda app: seen.append(app) or "T",
                                     max_buffering=2)
    assert custom._url() == "wss://fal.run/123/myapp/custom/path?fal_jwt_token=T&max_buffering=2"
    assert seen == ["123/myapp/custom/path"]
    with pytest.raises(ValueError, match="max_buffering"):
        client.realtime.connect("123-myapp", on_result=print, max_buffering=61)
