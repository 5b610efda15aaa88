"""The credential proxy against a recording fake of fal's hosts, over real loopback sockets.

The fake ("upstream") records every request it receives and answers like fal would, so the
tests can see exactly what the proxy forwarded. A second server ("attacker") records hits
that must never happen. The official JS clients against the real local runtime are in
``test_proxy_js.py``.
"""

import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request

from falweb.proxy import DEFAULTS
from falweb.proxy import FalProxy
from falweb.proxy import parse_target
from falweb.proxy import url_matcher
from falweb.testing import ServerThread
from falweb.testing import wait_until
from tests.conftest import TEST_FAL_KEY

ROUTE = "/api/fal/proxy"
TARGET = "x-fal-target-url"


class Recorder:
    """A loopback server that records each request (method, path, query, headers, body)."""

    def __init__(self, name):
        self.hits = []
        self.release = threading.Event()
        self.stream_ended = threading.Event()  # the SSE stream went past its first event
        self.app = Flask(name)
        self.app.add_url_rule(
            "/<path:path>",
            "any",
            self.handle,
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        )
        self.app.add_url_rule("/", "root", self.handle, defaults={"path": ""}, methods=["GET"])

    def handle(self, path):
        body = request.get_data()
        self.hits.append(
            {
                "method": request.method,
                "path": "/" + path,
                "query": request.query_string.decode(),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
        return self.answer("/" + path)

    def answer(self, path):
        if path == "/run/fal-ai/sse/stream":
            return Response(self.sse(), content_type="text/event-stream")
        if path == "/run/fal-ai/redirect":
            return "", 302, {"Location": "http://127.0.0.1:1/evil"}
        if path == "/run/fal-ai/redirect-fal":
            return "", 307, {"Location": self.url + "/queue/fal-ai/x/requests/1"}
        if path == "/run/fal-ai/ratelimited":
            return jsonify(detail="slow down"), 429, {"Retry-After": "7"}
        if path == "/run/fal-ai/slow":
            time.sleep(1.5)
        if path == "/run/fal-ai/echo-key":
            return "", 200, {"X-Echo": request.headers.get("Authorization", "")}
        if path == "/run/fal-ai/binary":
            return Response(bytes(range(256)) * 4, content_type="image/png")
        if path == "/run/fal-ai/gzip":
            body = gzip.compress(b"decoded on the way" * 100)
            return Response(body, headers={"Content-Encoding": "gzip"}, content_type="text/plain")
        if path == "/run/fal-ai/no-content-type":
            response = Response(b"raw")
            del response.headers["Content-Type"]
            return response
        return (
            jsonify(ok=True, method=request.method, path=path),
            200,
            {
                "x-fal-request-id": "req-123",
                "Set-Cookie": "session=upstream; Path=/",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic",
                "Access-Control-Allow-Origin": "*",
            },
        )

    def sse(self):
        yield 'data: {"n": 1}\n\n'
        # The second event waits for the test to have seen the first one through the proxy.
        self.release.wait(5)
        self.stream_ended.set()
        yield 'data: {"n": 2}\n\n'


def _serve(name):
    recorder = Recorder(name)
    with ServerThread(recorder.app) as server:
        recorder.url = server.url
        recorder.port = server.port
        yield recorder


# Servers live for the module (each shutdown costs half a second); their records do not.
@pytest.fixture(scope="module")
def _upstream_server():
    yield from _serve("upstream")


@pytest.fixture(scope="module")
def _attacker_server():
    yield from _serve("attacker")


@pytest.fixture
def upstream(_upstream_server):
    _upstream_server.hits.clear()
    _upstream_server.release.clear()
    _upstream_server.stream_ended.clear()
    yield _upstream_server
    _upstream_server.release.set()


@pytest.fixture
def attacker(_attacker_server):
    _attacker_server.hits.clear()
    return _attacker_server


def make_app(upstream_url, **config):
    """An unrelated Flask app with its own routes and the proxy embedded."""
    app = Flask("embedding")
    app.config.update(
        {"FAL_KEY": TEST_FAL_KEY, "FAL_PROXY_UPSTREAM": upstream_url, "TESTING": True} | config
    )

    @app.get("/")
    def index():
        return "my own app"

    @app.post("/api/things")
    def things():
        return jsonify(received=request.get_json())

    FalProxy(app)
    return app


@pytest.fixture(scope="module")
def proxy_app(_upstream_server):
    return make_app(_upstream_server.url)


@pytest.fixture(scope="module")
def _proxy_server(proxy_app):
    with ServerThread(proxy_app) as server:
        yield server


@pytest.fixture
def proxy_server(_proxy_server, upstream):
    return _proxy_server


def call(server, target, method="POST", headers=None, **kwargs):
    headers = {TARGET: target, **(headers or {})} if target is not None else (headers or {})
    return requests.request(method, server.url + ROUTE, headers=headers, timeout=10, **kwargs)


# --- Embedding -------------------------------------------------------------------------------


def test_embeds_in_an_unrelated_app_with_only_fal_proxy_keys(upstream):
    app = Flask("other")
    app.config["FAL_PROXY_UPSTREAM"] = upstream.url
    app.config["FAL_KEY"] = TEST_FAL_KEY

    @app.get("/hello")
    def hello():
        return "hi"

    before = set(app.config)
    proxy = FalProxy()
    proxy.init_app(app)
    assert app.extensions["fal_proxy"] is proxy
    assert {k for k in set(app.config) - before} <= set(DEFAULTS)
    assert all(k.startswith("FAL_PROXY_") for k in DEFAULTS)
    assert not hasattr(proxy, "app")
    client = app.test_client()
    assert client.get("/hello").text == "hi"
    response = client.post(
        ROUTE, headers={TARGET: "https://fal.run/fal-ai/fast-sdxl"}, json={"prompt": "x"}
    )
    assert response.status_code == 200
    assert upstream.hits[0]["path"] == "/run/fal-ai/fast-sdxl"


def test_own_routes_keep_working(proxy_server):
    assert requests.get(proxy_server.url + "/", timeout=5).text == "my own app"
    response = requests.post(proxy_server.url + "/api/things", json={"a": 1}, timeout=5)
    assert response.json() == {"received": {"a": 1}}


def test_custom_route_and_two_apps_share_one_extension(upstream):
    proxy = FalProxy()
    first = make_app(upstream.url)  # its own FalProxy at the default route
    second = Flask("second")
    second.config.update(FAL_PROXY_ROUTE="/fal", FAL_PROXY_UPSTREAM=upstream.url, FAL_KEY="k")
    proxy.init_app(second)
    target = {TARGET: "https://fal.run/fal-ai/a"}
    assert second.test_client().post("/fal", headers=target).status_code == 200
    assert second.test_client().post(ROUTE, headers=target).status_code == 404
    assert first.test_client().post(ROUTE, headers=target).status_code == 200


def test_bad_config_fails_at_init_app():
    app = Flask("bad")
    app.config["FAL_PROXY_ALLOWED_URL_PATTERNS"] = "fal.run/**"
    with pytest.raises(ValueError, match="FAL_PROXY_ALLOWED_URL_PATTERNS"):
        FalProxy(app)


def test_falweb_app_mounts_the_proxy(app):
    assert isinstance(app.extensions["fal_proxy"], FalProxy)
    response = app.test_client().post(ROUTE)
    assert response.status_code == 400
    assert response.is_json


# --- Forwarding ------------------------------------------------------------------------------


def test_forwards_raw_body_and_fal_headers_and_injects_the_key(upstream, proxy_server):
    body = b'{"prompt": "a cat",   "seed": 1}'  # spacing kept: the body is never re-encoded
    response = call(
        proxy_server,
        "https://queue.fal.run/fal-ai/fast-sdxl?fal_webhook=https%3A%2F%2Fx.y%2Fh",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "User-Agent": "@fal-ai/client/1.10.1",
            "x-fal-queue-priority": "low",
            "x-fal-runner-hint": "h",
            "Authorization": "Key client-supplied",
            "Cookie": "session=browser",
            "Origin": "https://example.com",
        },
    )
    assert response.status_code == 200
    hit = upstream.hits[0]
    assert hit["method"] == "POST"
    assert hit["path"] == "/queue/fal-ai/fast-sdxl"
    assert hit["query"] == "fal_webhook=https%3A%2F%2Fx.y%2Fh"
    assert hit["body"] == body
    headers = hit["headers"]
    assert headers["authorization"] == f"Key {TEST_FAL_KEY}"
    assert headers["x-fal-queue-priority"] == "low"
    assert headers["x-fal-runner-hint"] == "h"
    assert headers["x-fal-client-proxy"].startswith("falweb/")
    assert headers["user-agent"] == "@fal-ai/client/1.10.1"
    assert headers["accept"] == "application/json, text/event-stream"
    assert headers["content-type"] == "application/json"
    for absent in ("x-fal-target-url", "cookie", "origin"):
        assert absent not in headers


def test_bodiless_get_and_put_with_json_content_type(upstream, proxy_server):
    status = "https://queue.fal.run/fal-ai/flux/requests/abc/status?logs=1"
    response = call(
        proxy_server, status, method="GET", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    cancel = "https://queue.fal.run/fal-ai/flux/requests/abc/cancel"
    json_type = {"Content-Type": "application/json"}
    response = call(proxy_server, cancel, method="PUT", headers=json_type)
    assert response.status_code == 200
    assert [(h["method"], h["path"], h["query"], h["body"]) for h in upstream.hits] == [
        ("GET", "/queue/fal-ai/flux/requests/abc/status", "logs=1", b""),
        ("PUT", "/queue/fal-ai/flux/requests/abc/cancel", "", b""),
    ]
    assert upstream.hits[0]["headers"]["content-type"] == "application/json"


def test_get_never_forwards_a_body(upstream, proxy_server):
    call(proxy_server, "https://fal.run/fal-ai/a", method="GET", data=b"ignored")
    assert upstream.hits[0]["body"] == b""


def test_defaults_accept_and_content_type(upstream, proxy_server):
    # http.client adds no Accept, User-Agent or Content-Type of its own.
    conn = http.client.HTTPConnection("127.0.0.1", proxy_server.port, timeout=5)
    conn.request("POST", ROUTE, body=b"{}", headers={TARGET: "https://fal.run/fal-ai/a"})
    assert conn.getresponse().status == 200
    conn.close()
    headers = upstream.hits[0]["headers"]
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("falweb/")


def test_client_authorization_only_when_configured(upstream):
    app = make_app(upstream.url, FAL_PROXY_FORWARD_CLIENT_AUTHORIZATION=True)
    client = app.test_client()
    target = {TARGET: "https://fal.run/fal-ai/a"}
    client.post(ROUTE, headers=target | {"Authorization": "Key mine"})
    client.post(ROUTE, headers=target)
    assert upstream.hits[0]["headers"]["authorization"] == "Key mine"
    assert upstream.hits[1]["headers"]["authorization"] == f"Key {TEST_FAL_KEY}"


def test_key_id_and_secret_and_environment(upstream, monkeypatch):
    app = make_app(upstream.url, FAL_KEY=None, FAL_KEY_ID="id", FAL_KEY_SECRET="secret")
    app.test_client().post(ROUTE, headers={TARGET: "https://fal.run/fal-ai/a"})
    assert upstream.hits[-1]["headers"]["authorization"] == "Key id:secret"
    monkeypatch.setenv("FAL_KEY", "from-env")
    app = make_app(upstream.url, FAL_KEY=None)
    app.test_client().post(ROUTE, headers={TARGET: "https://fal.run/fal-ai/a"})
    assert upstream.hits[-1]["headers"]["authorization"] == "Key from-env"


def test_no_key_fal_upstream_is_401_local_upstream_forwards_without(upstream, monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    app = Flask("keyless")
    FalProxy(app)  # upstream = fal itself: nothing may leave without a key
    response = app.test_client().post(ROUTE, headers={TARGET: "https://fal.run/fal-ai/a"})
    assert response.status_code == 401
    assert response.json["error"] == "Unauthorized"

    app = make_app(upstream.url, FAL_KEY=None)
    response = app.test_client().post(
        ROUTE, headers={TARGET: "https://fal.run/fal-ai/a", "Authorization": "Key client"}
    )
    assert response.status_code == 200
    assert "authorization" not in upstream.hits[0]["headers"]


def test_relays_status_and_end_to_end_headers_only(proxy_server):
    response = call(proxy_server, "https://fal.run/fal-ai/fast-sdxl", json={})
    assert response.status_code == 200
    assert response.headers["x-fal-request-id"] == "req-123"
    assert response.headers["content-type"] == "application/json"
    dropped = ("set-cookie", "keep-alive", "proxy-authenticate", "access-control-allow-origin")
    for name in dropped:
        assert name not in response.headers
    assert response.json()["path"] == "/run/fal-ai/fast-sdxl"


def test_headers_named_by_connection_are_hop_by_hop():
    from urllib3 import HTTPHeaderDict

    from falweb.hosts import Hosts
    from falweb.proxy import _relay_headers

    raw = HTTPHeaderDict()
    for name, value in [
        ("Connection", "X-Hop, keep-alive"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "3"),
        ("Content-Encoding", "gzip"),
        ("x-fal-request-id", "r"),
        ("Vary", "a"),
        ("Vary", "b"),
    ]:
        raw.add(name, value)
    kept = _relay_headers(SimpleNamespace(headers=raw), Hosts(), [])
    assert kept == [("x-fal-request-id", "r"), ("Vary", "a"), ("Vary", "b")]


def test_relays_429_with_retry_after(proxy_server):
    response = call(proxy_server, "https://fal.run/fal-ai/ratelimited", json={})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"detail": "slow down"}


def test_relays_binary_and_missing_content_type(proxy_server):
    response = call(proxy_server, "https://fal.run/fal-ai/binary", method="GET")
    assert response.content == bytes(range(256)) * 4
    assert response.headers["content-type"] == "image/png"
    response = call(proxy_server, "https://fal.run/fal-ai/no-content-type", method="GET")
    assert response.content == b"raw"
    assert "content-type" not in response.headers


def _raw_get(server, target, method="GET"):
    # http.client shows the framing that requests hides: Content-Length or chunked.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, ROUTE, headers={TARGET: target, "Accept-Encoding": "gzip"})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def test_a_body_passed_on_unchanged_keeps_its_length_and_is_not_chunked(proxy_server):
    response, body = _raw_get(proxy_server, "https://fal.run/fal-ai/binary")
    assert body == bytes(range(256)) * 4
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("Transfer-Encoding") is None


def test_an_encoded_answer_is_decoded_and_its_length_dropped(proxy_server):
    response, body = _raw_get(proxy_server, "https://fal.run/fal-ai/gzip")
    assert body == b"decoded on the way" * 100
    assert response.getheader("Content-Encoding") is None
    assert response.getheader("Content-Length") in (None, str(len(body)))


def test_a_head_answer_keeps_the_length_without_a_body(proxy_server):
    response, body = _raw_get(proxy_server, "https://fal.run/fal-ai/binary", method="HEAD")
    assert response.status == 200
    assert body == b""
    assert response.getheader("Content-Length") == str(256 * 4)


def test_head_request(upstream, proxy_server):
    response = call(proxy_server, "https://fal.run/fal-ai/a", method="HEAD")
    assert response.status_code == 200
    assert response.content == b""
    assert upstream.hits[0]["method"] == "HEAD"


def test_sse_events_arrive_before_upstream_finishes(upstream, proxy_server):
    with call(proxy_server, "https://fal.run/fal-ai/sse/stream", json={}, stream=True) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        # The upstream has not gone past its first event: it was not buffered on the way.
        assert not upstream.stream_ended.is_set()
        assert json.loads(first.removeprefix(b"data: ")) == {"n": 1}
        upstream.release.set()
        second = next(line for line in lines if line)
        assert json.loads(second.removeprefix(b"data: ")) == {"n": 2}


def test_redirects_are_not_followed_and_foreign_locations_dropped(upstream, attacker, proxy_server):
    response = call(proxy_server, "https://fal.run/fal-ai/redirect", allow_redirects=False)
    assert response.status_code == 302
    assert "location" not in response.headers
    response = call(proxy_server, "https://fal.run/fal-ai/redirect-fal", allow_redirects=False)
    assert response.status_code == 307
    # The local runtime's own URL goes back out as fal's canonical one.
    assert response.headers["location"] == "https://queue.fal.run/fal-ai/x/requests/1"
    assert attacker.hits == []


def test_upstream_echoing_the_key_in_a_header_is_dropped(proxy_server):
    response = call(proxy_server, "https://fal.run/fal-ai/echo-key")
    assert response.status_code == 200
    assert "x-echo" not in response.headers


# --- Errors ----------------------------------------------------------------------------------


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json() if callable(response.json) else response.json
    assert set(body) == {"error", "detail"}
    assert body["error"] and body["detail"]
    return body


def test_missing_target_is_400(upstream, proxy_server):
    error_of(call(proxy_server, None), 400)
    error_of(call(proxy_server, ""), 400)
    assert upstream.hits == []


def test_two_target_headers_are_400(upstream, proxy_app):
    response = proxy_app.test_client().post(
        ROUTE, headers=[(TARGET, "https://fal.run/a"), (TARGET, "https://fal.run/b")]
    )
    assert response.status_code == 400
    assert upstream.hits == []


def test_not_allowed_url_is_400(upstream, proxy_server):
    body = error_of(call(proxy_server, "https://rest.fal.ai/admin"), 400)
    assert "ALLOWED_URL_PATTERNS" in body["detail"]
    assert upstream.hits == []


def test_endpoint_allowlist_is_403(upstream):
    app = make_app(upstream.url, FAL_PROXY_ALLOWED_ENDPOINTS=["fal-ai/fast-sdxl", "fal-ai/flux/*"])
    client = app.test_client()

    def post(target, method="POST"):
        return client.open(ROUTE, method=method, headers={TARGET: target})

    assert post("https://queue.fal.run/fal-ai/fast-sdxl").status_code == 200
    assert post("https://queue.fal.run/fal-ai/flux/dev").status_code == 200
    assert post("https://fal.run/fal-ai/flux/dev/stream").status_code == 403
    response = post("https://queue.fal.run/fal-ai/other")
    assert response.status_code == 403
    assert response.json["error"] == "Forbidden"
    assert post("https://fal.run/fal-ai/other", method="GET").status_code == 403
    # Status, result and cancel use the app base, not an endpoint id.
    assert post("https://queue.fal.run/fal-ai/other/requests/1/status", "GET").status_code == 200
    assert post("https://queue.fal.run/fal-ai/other/requests/1/cancel", "PUT").status_code == 200
    # REST calls (tokens, storage) are not endpoint calls.
    assert post("https://rest.fal.ai/tokens/").status_code == 200


def test_body_too_large_is_413_from_content_length(upstream):
    app = make_app(upstream.url, FAL_PROXY_MAX_BODY_BYTES=1000)
    with ServerThread(app) as server:
        error_of(call(server, "https://fal.run/fal-ai/a", data=b"x" * 1001), 413)
        assert call(server, "https://fal.run/fal-ai/a", data=b"x" * 1000).status_code == 200
    assert [len(h["body"]) for h in upstream.hits] == [1000]


def test_body_too_large_is_413_while_streaming_a_chunked_body(upstream):
    app = make_app(upstream.url, FAL_PROXY_MAX_BODY_BYTES=100_000)
    with ServerThread(app) as server:
        chunks = (b"x" * 10_000 for _ in range(50))  # a generator: sent chunked, no length
        error_of(call(server, "https://fal.run/fal-ai/a", data=chunks), 413)
        small = (b"x" * 10_000 for _ in range(5))
        assert call(server, "https://fal.run/fal-ai/a", data=small).status_code == 200
    assert len(upstream.hits[-1]["body"]) == 50_000


def test_upstream_unreachable_is_502():
    app = make_app("http://127.0.0.1:9")  # discard port: nothing listens
    with ServerThread(app) as server:
        body = error_of(call(server, "https://fal.run/fal-ai/a"), 502)
    assert "127.0.0.1" not in body["detail"]


def _self_signed(folder):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_an_https_upstream_with_an_untrusted_certificate_is_502(tmp_path):
    # The proxy's own transport verifies TLS as requests does: a forged upstream (here,
    # self-signed) never sees the key.
    import ssl

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    received = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                received.append(tls.recv(65536))
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (ssl.SSLError, OSError):
            pass  # the proxy hung up during the handshake, as it must

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with ServerThread(make_app(f"https://127.0.0.1:{port}")) as server:
            error_of(call(server, "https://fal.run/fal-ai/a", json={}), 502)
        thread.join(10)
    finally:
        listener.close()
    assert received == []


def test_upstream_timeout_is_504(upstream):
    app = make_app(upstream.url, FAL_PROXY_TIMEOUT=(2.0, 0.3))
    with ServerThread(app) as server:
        error_of(call(server, "https://fal.run/fal-ai/slow"), 504)


class _RawUpstream:
    """An upstream that answers each request with ``head`` and ``body`` as raw bytes,
    then (``stall`` seconds later) closes: an answer shorter than it said, or a slow one."""

    def __init__(self, head, body, stall=0.0):
        self.head, self.body, self.stall = head, body, stall
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.head)
                time.sleep(self.stall)
                conn.sendall(self.body)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("stall, status", [(0.0, 502), (1.0, 504)])
def test_an_answer_cut_short_or_stalled_is_an_error_not_a_short_body(stall, status):
    # The queue's small answers are read whole before they are passed on: one that ends
    # before its Content-Length is fal's fault, said as such, never half a JSON body.
    raw = _RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100\r\n\r\n", b'{"status": "COMPL', stall=stall)
    try:
        app = make_app(raw.url, FAL_PROXY_TIMEOUT=(2.0, 0.3))
        with ServerThread(app) as server:
            target = "https://queue.fal.run/fal-ai/x/requests/1/status"
            body = error_of(call(server, target, method="GET"), status)
            assert "COMPL" not in body["detail"]
            # The proxy is none the worse for it.
            assert requests.get(server.url + "/", timeout=10).text == "my own app"
    finally:
        raw.close()


# --- Hostile targets -------------------------------------------------------------------------


def hostile_targets(attacker_port):
    a = f"127.0.0.1:{attacker_port}"
    return [
        f"https://fal.run@{a}/",
        f"https://fal.run:x@{a}/",
        f"https://{a}#fal.run",
        "https://evil.com#fal.run",
        "https://evil.com?x=fal.run",
        "https://fal.run.evil.com/",
        "https://evilfal.run/",
        "https://fal.run.localhost/",
        "http://fal.run/fal-ai/a",
        f"http://{a}/fal.run",
        "https://127.0.0.1/",
        f"https://{a}/",
        "https://2130706433/",
        "https://0x7f.1/",
        "https://[::1]/",
        f"https://[::ffff:127.0.0.1]:{attacker_port}/",
        "https://fal.run:8443/",
        f"https://fal.run:{attacker_port}/",
        "https://fal%2erun/",
        "https://fal.run%2f@evil.com/",
        "https://FAL.RUN/",
        "HTTPS://fal.run/",
        "https:fal.run/x",
        "https:/fal.run/x",
        "https:///fal.run/x",
        "https:\\\\fal.run/x",
        "https://fal.run\\@evil.com/",
        "//fal.run/x",
        "fal.run/x",
        "https://fal.run/x%0d%0aHost:%20evil.com",
        "https://fal.run/x\x00",
        "https://fal.run/ x",
        "https://fal.run/\u00e9",
        "https://fаl.run/",  # Cyrillic "а"
        "https://xn--fl-8kc.run/",
        "javascript:alert(1)//fal.run",
        "file:///etc/passwd",
        "data:text/plain,fal.run",
        "ftp://fal.run/",
        "wss://fal.run/fal-ai/x/realtime",
        "https://rest.fal.ai/admin",
        "https://rest.fal.ai/tokens/../admin",
        "https://rest.fal.ai/storage/upload/initiate?storage_type=other",
        "https://fal.run/../../etc/passwd",
        "https://fal.run/fal-ai/%2e%2e/admin",
        "https://fal.run/fal-ai/%2E%2E%2fadmin",
        "https://fal.run/fal-ai//x",
        "https://fal.run//evil.com/x",
        "https://fal.run/./x",
        "https://fal.run/x%",
        "https://fal.run/x%zz",
        "https://fal.run/x%00",
        "https://fal.run/x?",
        "https://fal.ai/x",
        "https://api.fal.run/x",
        "https://v3.fal.media/files/x",
        "https://fal.run/x" + "a" * 9000,
    ]


def test_hostile_targets_never_leave_for_anyone(upstream, attacker, proxy_server):
    for target in hostile_targets(attacker.port):
        # requests refuses to send CR/LF/NUL in a header; the test client sends anything.
        response = proxy_server_request(proxy_server, target)
        assert response.status_code == 400, (target, response.status_code)
    assert attacker.hits == []
    assert upstream.hits == []


def proxy_server_request(server, target):
    try:
        return call(server, target, json={})
    except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
        # requests refuses CR/LF/NUL and non-Latin-1 in headers: write the bytes ourselves.
        return raw_request(server, target.encode("utf-8"))


def raw_request(server, target_bytes):
    """POST with ``target_bytes`` as the header value, byte for byte; returns the status."""
    head = (
        b"POST " + ROUTE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"x-fal-target-url: " + target_bytes + b"\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\n{}"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return SimpleNamespace(status_code=int(data.split(b" ", 2)[1]))


def test_an_injected_host_header_does_not_change_the_upstream(upstream, attacker, proxy_server):
    # What a CR/LF in a client's header value becomes on the wire: a second header line.
    injected = f"https://fal.run/x\r\nHost: 127.0.0.1:{attacker.port}".encode()
    assert raw_request(proxy_server, injected).status_code == 200
    assert [h["path"] for h in upstream.hits] == ["/run/x"]
    assert attacker.hits == []


@pytest.mark.parametrize(
    "target",
    [
        b"https://fal.run/x\r\n Host: evil.com",  # obs-fold continuation line
        b"https://fal.run/x\r\n\tevil.com",
        b"https://fal.run/x\x00.evil.com",
        b"https://fal.run/x\ty",
        b"https://fal.run/\xc3\xa9",
        b"https://fal.run/\xff",
        b"https://fal.run@\x00evil.com/",
    ],
)
def test_raw_header_bytes_are_refused(upstream, attacker, proxy_server, target):
    assert raw_request(proxy_server, target).status_code == 400
    assert upstream.hits == [] and attacker.hits == []


@pytest.mark.parametrize(
    "target",
    [
        "https://fal.run/x\r\nHost: evil.com",
        "https://fal.run/x\nX: y",
        "https://fal.run/\u00e9",
        "https://fal.run/x\x00",
        "https://fal.run/x\ty",
    ],
)
def test_control_and_non_ascii_targets_via_test_client(upstream, proxy_app, target):
    try:
        response = proxy_app.test_client().post(ROUTE, headers={TARGET: target})
    except ValueError:
        return  # Werkzeug refuses to even build such a header: nothing reaches the proxy
    assert response.status_code == 400
    assert upstream.hits == []


@pytest.mark.parametrize(
    "target",
    [
        "https://fal.run",
        "https://fal.run/",
        "https://fal.run/fal-ai/flux/dev",
        "https://fal.run/fal-ai/x/stream",
        "https://queue.fal.run/fal-ai/flux/requests/1f2e-3d/status?logs=0",
        "https://queue.fal.run/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fx.y%2Fh",
        "https://queue.fal.run/workflows/fal-ai/wf/requests/r",
        "https://fal.run/110602490/lora",
        "https://rest.fal.ai/tokens/",
        "https://rest.alpha.fal.ai/tokens/",
        "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
        "https://rest.alpha.fal.ai/storage/upload/initiate",
        "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
        "https://rest.fal.ai/storage/upload/complete-multipart?storage_type=fal-cdn-v3",
    ],
)
def test_what_official_clients_send_is_allowed(upstream, proxy_app, target):
    response = proxy_app.test_client().post(ROUTE, headers={TARGET: target})
    assert response.status_code == 200, response.text
    assert len(upstream.hits) == 1


def test_parse_target_splits_host_path_query():
    assert parse_target("https://fal.run") == ("fal.run", "/", "")
    assert parse_target("https://queue.fal.run/a/b?logs=1") == ("queue.fal.run", "/a/b", "logs=1")


def test_globs_follow_fal_proxy_semantics():
    # The vectors of fal-protocol §14 (from fal's own proxy tests).
    default = url_matcher(DEFAULTS["FAL_PROXY_ALLOWED_URL_PATTERNS"])
    for url in (
        "fal.run",
        "fal.run/",
        "fal.run/v1/a/b",
        "queue.fal.run/x",
        "rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
    ):
        assert default(url), url
    for url in (
        "fal.dev/x",
        "fal.ai/x",
        "queue.fal.ai/x",
        "api.fal.run/x",
        "notfal.run/x",
        "fal.run.evil.com/x",
        "",
        "rest.fal.ai/storage/upload/initiate?storage_type=other",
        "rest.beta.fal.ai/storage/upload/initiate",
    ):
        assert not default(url), url
    assert url_matcher(["fal-ai/*"])("fal-ai/flux-dev")
    assert not url_matcher(["fal-ai/*"])("fal-ai/flux/dev")
    assert url_matcher(["fal-ai/**"])("fal-ai")
    assert url_matcher(["fal-ai/**"])("fal-ai/flux/dev/extra")
    assert url_matcher(["*/flux-dev"])("other/flux-dev")
    assert url_matcher(["a/**/b"])("a/b") and url_matcher(["a/**/b"])("a/x/y/b")
    assert url_matcher(["fal-ai/flux?dev"])("fal-ai/flux-dev")
    assert not url_matcher(["fal-ai/flux?dev"])("fal-ai/flux/dev")
    assert not url_matcher(["fal.run/x"])("falxrun/x")


# --- Hooks -----------------------------------------------------------------------------------


def test_authorize_hooks(upstream):
    app = make_app(upstream.url)
    proxy = app.extensions["fal_proxy"]
    seen = []

    @proxy.authorize
    def by_header(req):
        seen.append(req.headers.get("X-User"))
        return {"alice": True, "mallory": False, "quota": ({"error": "quota"}, 402)}.get(
            req.headers.get("X-User")
        )

    @proxy.authorize
    def nobody_else(req):
        return False

    client = app.test_client()
    target = {TARGET: "https://fal.run/fal-ai/a"}
    assert client.post(ROUTE, headers=target | {"X-User": "alice"}).status_code == 200
    assert error_of(client.post(ROUTE, headers=target | {"X-User": "mallory"}), 401)
    response = client.post(ROUTE, headers=target | {"X-User": "quota"})
    assert (response.status_code, response.json) == (402, {"error": "quota"})
    assert client.post(ROUTE, headers=target).status_code == 401
    assert seen == ["alice", "mallory", "quota", None]
    assert len(upstream.hits) == 1


def test_unauthorized_requests_can_be_refused_by_default(upstream):
    app = make_app(upstream.url, FAL_PROXY_ALLOW_UNAUTHORIZED=False)
    response = app.test_client().post(ROUTE, headers={TARGET: "https://fal.run/fal-ai/a"})
    assert response.status_code == 401
    assert upstream.hits == []


def test_rate_limit_and_analytics_hooks(upstream):
    """The seed's "analytics + rate limit" example, in the shape the README shows."""
    app = make_app(upstream.url)
    proxy = app.extensions["fal_proxy"]
    events = []
    calls = {}

    @proxy.before_forward
    def rate_limit(request, target_url, headers):
        user = request.headers.get("X-User", "anonymous")
        calls[user] = calls.get(user, 0) + 1
        if calls[user] > 2:
            return jsonify(error="Too many requests"), 429, {"Retry-After": "60"}
        headers["x-fal-runner-hint"] = user  # hooks may add headers too

    @proxy.after_response
    def analytics(request, target_url, upstream_response):
        events.append((target_url, upstream_response.status_code, request.headers["X-User"]))

    client = app.test_client()
    target = {TARGET: "https://fal.run/fal-ai/a", "X-User": "bob"}
    statuses = [client.post(ROUTE, headers=target).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = client.post(ROUTE, headers=target)
    assert response.json == {"error": "Too many requests"}
    assert response.headers["Retry-After"] == "60"
    assert len(upstream.hits) == 2
    assert upstream.hits[0]["headers"]["x-fal-runner-hint"] == "bob"
    assert events == [("https://fal.run/fal-ai/a", 200, "bob")] * 2


# --- CORS ------------------------------------------------------------------------------------


def test_cors_preflight_and_exposed_request_id(upstream):
    app = make_app(upstream.url, FAL_PROXY_CORS_ORIGINS=["https://app.example"])
    client = app.test_client()
    response = client.options(
        ROUTE,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": (
                "content-type, x-fal-target-url, x-fal-queue-priority, x-evil"
            ),
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    allowed = response.headers["Access-Control-Allow-Headers"]
    assert "x-fal-target-url" in allowed and "x-evil" not in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    response = client.post(
        ROUTE, headers={TARGET: "https://fal.run/fal-ai/a", "Origin": "https://app.example"}
    )
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["Access-Control-Expose-Headers"] == "x-fal-request-id"
    response = client.post(
        ROUTE, headers={TARGET: "https://fal.run/fal-ai/a", "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers
    assert upstream.hits and all(h["method"] == "POST" for h in upstream.hits)


def test_no_cors_headers_unless_configured(proxy_app):
    response = proxy_app.test_client().post(
        ROUTE, headers={TARGET: "https://fal.run/fal-ai/a", "Origin": "https://x.example"}
    )
    assert not any(k.lower().startswith("access-control-") for k in response.headers.keys())


# --- The key never leaks ---------------------------------------------------------------------


def test_key_never_in_responses_or_logs(upstream, caplog, capsys):
    caplog.set_level("DEBUG")
    app = make_app(upstream.url, FAL_PROXY_MAX_BODY_BYTES=10, FAL_PROXY_ALLOWED_ENDPOINTS=["x/*"])
    seen = []
    with ServerThread(app) as server:
        for target, kwargs in [
            ("https://fal.run/x/a", {}),
            ("https://fal.run/x/sse/stream", {}),
            ("https://fal.run/x/echo-key", {}),
            ("https://fal.run/fal-ai/a", {}),
            ("https://fal.run/x/a", {"data": b"x" * 100}),
            ("https://evil.com/", {}),
            (None, {}),
        ]:
            upstream.release.set()
            response = call(server, target, **kwargs)
            seen.append(response)
    unreachable = make_app("http://127.0.0.1:9")
    seen.append(unreachable.test_client().post(ROUTE, headers={TARGET: "https://fal.run/a"}))
    assert any(TEST_FAL_KEY in h["headers"].get("authorization", "") for h in upstream.hits)
    for response in seen:
        text = getattr(response, "text", None) or response.get_data(as_text=True)
        assert TEST_FAL_KEY not in text
        assert TEST_FAL_KEY not in str(dict(response.headers))
    captured = capsys.readouterr()
    assert "falweb.proxy" in caplog.text or caplog.records
    for text in (caplog.text, captured.out, captured.err):
        assert TEST_FAL_KEY not in text
        assert "test-key-secret" not in text


def test_one_log_line_per_request_without_query(upstream, proxy_app, caplog):
    caplog.set_level("INFO", logger="falweb.proxy")
    client = proxy_app.test_client()
    client.get(
        ROUTE,
        headers={TARGET: "https://queue.fal.run/fal-ai/x/requests/1/status?fal_jwt_token=SECRET"},
    )
    client.post(ROUTE, headers={TARGET: "https://evil.com/?fal_jwt_token=SECRET"})
    records = [r for r in caplog.records if r.name == "falweb.proxy"]
    assert len(records) == 2
    assert "GET queue.fal.run/fal-ai/x/requests/1/status 200" in records[0].getMessage()
    assert records[1].getMessage().startswith("POST - 400")
    assert "SECRET" not in caplog.text


# --- Under gunicorn --------------------------------------------------------------------------


def gunicorn_app(upstream_url):
    """WSGI factory for gunicorn: ``tests.test_proxy:gunicorn_app('http://...')``."""
    return make_app(upstream_url, FAL_PROXY_MAX_BODY_BYTES=1_000_000)


@pytest.mark.slow
def test_under_gunicorn_gthread(upstream, attacker):
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed in this environment")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            gunicorn,
            "-k",
            "gthread",
            "--threads",
            "4",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            f"tests.test_proxy:gunicorn_app({upstream.url!r})",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def listening():
        assert proc.poll() is None, "gunicorn exited"  # it died: no use waiting
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True

    try:
        wait_until(listening, timeout=20, interval=0.1, ignore=OSError,
                   message="gunicorn to listen")
        server = SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port)
        test_sse_events_arrive_before_upstream_finishes(upstream, server)
        upstream.hits.clear()
        body = bytes(range(256)) * 1000
        assert call(server, "https://fal.run/fal-ai/a", data=body).status_code == 200
        assert upstream.hits[-1]["body"] == body
        chunks = (b"x" * 100_000 for _ in range(20))
        assert call(server, "https://fal.run/fal-ai/a", data=chunks).status_code == 413
        assert call(server, f"https://fal.run@{attacker.url[7:]}/").status_code == 400
        assert attacker.hits == []
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert TEST_FAL_KEY not in err


def test_hostile_json_streams_through_to_the_backend_that_refuses_it(live_server):
    # The proxy streams bodies unparsed (uploads stay flat in memory); the backend parses
    # them. JSON nested 100,000 deep once made the runtime's parser raise RecursionError:
    # through the proxy it is the runtime's 422 naming the body, never a 500.
    deep = "[" * 100_000 + "]" * 100_000
    for target in ("https://queue.fal.run/fal-ai/fast-sdxl", "https://fal.run/fal-ai/fast-sdxl",
                   "https://rest.alpha.fal.ai/storage/upload/initiate"):
        answer = requests.post(live_server.url + "/api/fal/proxy", data=deep, timeout=30,
                               headers={"x-fal-target-url": target,
                                        "content-type": "application/json"})
        assert answer.status_code == 422, (target, answer.text[:200])
        assert answer.json()["detail"][0]["loc"] == ["body"]
