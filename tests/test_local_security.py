"""Attacks on the local runtime, each replayed over real sockets: stored pages served from the
app's origin, cross-origin calls, a forged Host, webhooks and input fetches aimed at this
machine (DNS rebinding included), LoRA paths outside the weights folders.

Only loopback is ever contacted: every outbound connection this process makes goes through a
guard (autouse) that refuses, without connecting, any address that is not loopback. Public
addresses appear only in a mocked resolver's answers, and the guard records any attempt.
"""

import ipaddress
import os
import socket
import subprocess
import sys

import pytest
import requests
import websocket
from flask import Flask
from urllib3.util import connection as urllib3_connection

from falweb import backend
from falweb.local import create_local_app
from falweb.local import inputs
from falweb.local import netguard
from falweb.local import runtime_of
from falweb.local.delivery import MAX_ATTEMPTS
from falweb.local.delivery import WebhookPolicy
from falweb.local.engines import InvalidInput
from falweb.local.http import host_allowed
from falweb.testing import ServerThread
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until
from tests.local_helpers import wait_status

#: Public addresses that only a mocked resolver ever answers; nothing connects to them.
PUBLIC_IP = "93.184.216.34"
SMALL = {"num_inference_steps": 1, "image_size": "square"}


def _ip(host):
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Every connection urllib3 makes in this process (requests, the runtime's webhook and
    fetch threads) reaches loopback or is refused before connecting; refused attempts are
    listed in ``.attempts``."""
    real = urllib3_connection.create_connection
    attempts = []

    def guarded(address, *args, **kwargs):
        host = address[0]
        ip = _ip(host)
        if ip is None:  # a name: what it resolves to right now must be loopback
            resolved = [_ip(info[4][0]) for info in socket.getaddrinfo(host, address[1])]
            ok = all(r is not None and r.is_loopback for r in resolved)
        else:
            ok = ip.is_loopback
        if not ok:
            attempts.append(address)
            raise OSError(f"test guard: {address} is not loopback; not connecting")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3_connection, "create_connection", guarded)
    guarded.attempts = attempts
    return guarded


@pytest.fixture
def recorder():
    """A webhook receiver / file server on loopback that counts every request it gets."""
    hits = []
    app = Flask("recorder")

    @app.route("/<path:path>", methods=["GET", "POST"])
    def anything(path):
        from flask import request

        hits.append((request.method, path))
        return b"\x89PNG\r\n\x1a\n", 200, {"Content-Type": "image/png"}

    with ServerThread(app) as server:
        server.hits = hits
        server.port = int(server.url.rsplit(":", 1)[1])
        yield server


@pytest.fixture
def rebinding(monkeypatch):
    """``rebind.test`` resolves to a public address the first time, then to 127.0.0.1: the
    answers a rebinding attacker's DNS server gives. Other names resolve as usual."""
    real = socket.getaddrinfo
    calls = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name != "rebind.test":
            return real(host, port, *args, **kwargs)
        calls.append(name)
        address = PUBLIC_IP if len(calls) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 (address, int(port or 80)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def upload(base, data, content_type, file_name, put_type=None):
    urls = requests.post(f"{base}/rest/storage/upload/initiate",
                         json={"content_type": content_type, "file_name": file_name},
                         timeout=10).json()
    put = requests.put(urls["upload_url"], data=data,
                       headers={"Content-Type": put_type or content_type}, timeout=10)
    assert put.status_code == 200, put.text
    return urls["file_url"]


def job_count(server):
    return sum(server.runtime.queue.counts().values())


# -- 1. stored files cannot script the origin that serves them ----------------------------

PAGE = b"<html><script>fetch('/').then(r => r.text()).then(alert)</script></html>"


@pytest.mark.parametrize("content_type,name", [
    ("text/html", "page.html"),
    ("text/html; charset=utf-8", "page.htm"),
    ("image/svg+xml", "logo.svg"),
    ("application/xml", "feed.xml"),
    ("text/xml", "feed.xml"),
    ("application/javascript", "app.js"),
    ("application/xhtml+xml", "page.xhtml"),
    ("application/pdf", "doc.pdf"),
    ("application/octet-stream", "blob.bin"),
])
def test_an_uploaded_page_is_an_attachment_in_a_sandbox(local_runtime, content_type, name):
    url = upload(local_runtime.url, PAGE, content_type, name)
    for method in ("GET", "HEAD"):
        answer = requests.request(method, url, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["Content-Disposition"].startswith("attachment")
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        csp = answer.headers["Content-Security-Policy"]
        assert "sandbox" in csp and "default-src 'none'" in csp
    assert requests.get(url, timeout=10).content == PAGE


def test_a_generic_upload_made_html_by_its_put_is_an_attachment(local_runtime):
    url = upload(local_runtime.url, PAGE, "application/octet-stream", "x", put_type="text/html")
    answer = requests.get(url, timeout=10)
    assert answer.headers["Content-Disposition"].startswith("attachment")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_content_type_that_is_not_a_mime_type_is_served_as_bytes(local_runtime):
    injected = upload(local_runtime.url, PAGE, "text/html;\r\nSet-Cookie: a=b", "x.html",
                      put_type="text/html")
    answer = requests.get(injected, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].split(";")[0] == "text/html"
    assert answer.headers["Content-Disposition"].startswith("attachment")
    assert "Set-Cookie" not in answer.headers
    odd = upload(local_runtime.url, PAGE, "<svg onload=x>/x", "x", put_type="text/html")
    answer = requests.get(odd, timeout=10)
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize("content_type,data", [
    ("image/png", b"\x89PNG\r\n\x1a\n"), ("image/jpeg", b"\xff\xd8\xff"),
    ("image/webp", b"RIFF"), ("image/gif", b"GIF89a"), ("video/mp4", b"...."),
    ("audio/mpeg", b"ID3"), ("text/plain", b"hello <b>there</b>"),
])
def test_media_and_plain_text_stay_inline(local_runtime, content_type, data):
    url = upload(local_runtime.url, data, content_type, "f")
    answer = requests.get(url, timeout=10)
    assert answer.content == data
    assert answer.headers["Content-Type"].split(";")[0] == content_type
    assert answer.headers["Content-Disposition"].startswith("inline")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer.headers["Content-Security-Policy"]
    # public capability URLs, as on fal's CDN: any origin may read them
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_outputs_are_inline_images(local_runtime):
    result = requests.post(f"{local_runtime.url}/run/fal-ai/fast-sdxl",
                           json={"prompt": "x", **SMALL}, timeout=30).json()
    answer = requests.get(result["images"][0]["url"], timeout=10)
    assert answer.headers["Content-Type"] in ("image/png", "image/jpeg")
    assert answer.headers["Content-Disposition"].startswith("inline")


def test_files_on_the_apps_origin_are_sandboxed_too(live_server):
    url = upload(live_server.url + "/local", PAGE, "text/html", "page.html")
    assert url.startswith(live_server.url + "/local/cdn/files/")
    answer = requests.get(url, timeout=10)
    assert answer.headers["Content-Disposition"].startswith("attachment")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer.headers["Content-Security-Policy"]


# -- 2. no CORS unless configured ---------------------------------------------------------

EVIL_ORIGIN = "https://evil.example"


def _preflight(url, method="PUT", origin=EVIL_ORIGIN):
    return requests.options(url, headers={"Origin": origin,
                                          "Access-Control-Request-Method": method,
                                          "Access-Control-Request-Headers": "content-type"},
                            timeout=10)


def test_no_cors_headers_by_default(local_runtime):
    base = local_runtime.url
    job = requests.post(f"{base}/queue/fal-ai/fast-sdxl", json={"prompt": "x", **SMALL},
                        headers={"Origin": EVIL_ORIGIN}, timeout=10)
    assert job.status_code == 200
    assert "Access-Control-Allow-Origin" not in job.headers
    cancel_url = job.json()["cancel_url"]
    preflight = _preflight(cancel_url)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Methods" not in preflight.headers
    for answer in (requests.put(cancel_url, headers={"Origin": EVIL_ORIGIN}, timeout=10),
                   requests.get(job.json()["status_url"], headers={"Origin": EVIL_ORIGIN},
                                timeout=10),
                   requests.post(f"{base}/rest/storage/upload/initiate", json={},
                                 headers={"Origin": EVIL_ORIGIN}, timeout=10)):
        assert "Access-Control-Allow-Origin" not in answer.headers
    # downloads stay readable from anywhere, preflight included
    url = upload(base, b"abc", "text/plain", "a.txt")
    assert _preflight(url, "GET").headers["Access-Control-Allow-Origin"] == "*"


def test_cors_star_opens_the_runtime_to_every_origin(local_config):
    with serve_local_runtime(local_config | {"FALWEB_LOCAL_CORS_ORIGINS": ["*"]}) as server:
        preflight = _preflight(f"{server.url}/queue/fal-ai/fast-sdxl", "POST")
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "content-type" in preflight.headers["Access-Control-Allow-Headers"]
        job = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl", json={"prompt": "x", **SMALL},
                            headers={"Origin": EVIL_ORIGIN}, timeout=10)
        assert job.headers["Access-Control-Allow-Origin"] == "*"
        assert job.headers["Access-Control-Expose-Headers"] == "x-fal-request-id"


def test_cors_lists_origins(local_config):
    config = local_config | {"FALWEB_LOCAL_CORS_ORIGINS": ["https://app.example"]}
    with serve_local_runtime(config) as server:
        url = f"{server.url}/queue/fal-ai/fast-sdxl"
        ok = _preflight(url, "POST", "https://app.example")
        assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Access-Control-Allow-Origin" not in _preflight(url, "POST").headers
        answer = requests.get(f"{server.url}/queue/fal-ai/fast-sdxl/requests/x/status",
                              headers={"Origin": EVIL_ORIGIN}, timeout=10)
        assert "Access-Control-Allow-Origin" not in answer.headers
        assert "Origin" in answer.headers["Vary"]


# -- 3. a forged Host never reaches the URLs the runtime hands out ------------------------


def test_a_forged_host_is_refused(local_runtime):
    base = local_runtime.url
    port = base.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "localhost:1", f"127.0.0.2:{port}",
                 f"localhost@evil.example:{port}"):
        submitted = requests.post(f"{base}/queue/fal-ai/fast-sdxl",
                                  json={"prompt": "x", **SMALL}, headers={"Host": host},
                                  timeout=10)
        assert submitted.status_code == 400, (host, submitted.text)
        assert "nknown host" in submitted.json()["detail"]
        assert "evil.example" not in submitted.headers.get("Location", "")
        initiated = requests.post(f"{base}/rest/storage/upload/initiate", json={},
                                  headers={"Host": host}, timeout=10)
        assert initiated.status_code == 400
        token = requests.post(f"{base}/rest/storage/auth/token", headers={"Host": host},
                              timeout=10)
        assert token.status_code == 400
    assert job_count(local_runtime) == 0
    # the runtime's own names work, and their URLs name them
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        body = requests.post(f"{base}/queue/fal-ai/fast-sdxl", json={"prompt": "x", **SMALL},
                             headers={"Host": host}, timeout=10).json()
        assert body["status_url"].startswith(f"http://{host}/queue/")
    # downloads and the health check build no URL: any name the app is reached by works
    url = upload(base, b"abc", "text/plain", "a.txt")
    assert requests.get(url, headers={"Host": "files.example"}, timeout=10).content == b"abc"
    assert requests.get(f"{base}/healthz", headers={"Host": "h.example"}, timeout=10).ok


def test_a_forged_host_cannot_open_a_realtime_socket(local_runtime):
    url = local_runtime.url.replace("http://", "ws://") + "/run/fal-ai/fast-lcm-diffusion/realtime"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, host="evil.example", timeout=10)
    assert refused.value.status_code == 400


def test_allowed_hosts_and_public_url(local_config):
    config = local_config | {"FALWEB_LOCAL_ALLOWED_HOSTS": ["gpu-box", "lab.example:8443"]}
    with serve_local_runtime(config) as server:
        port = server.url.rsplit(":", 1)[1]
        for host, code in ((f"gpu-box:{port}", 200), ("gpu-box", 200),
                           ("lab.example:8443", 200), (f"lab.example:{port}", 400)):
            answer = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                                   json={"prompt": "x", **SMALL}, headers={"Host": host},
                                   timeout=10)
            assert answer.status_code == code, host
            if code == 200:
                assert answer.json()["status_url"].startswith(f"http://{host}/")
    config = local_config | {"FALWEB_LOCAL_PUBLIC_URL": "https://gen.example/local"}
    with serve_local_runtime(config) as server:
        body = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                             json={"prompt": "x", **SMALL}, headers={"Host": "evil.example"},
                             timeout=10).json()
        assert body["status_url"].startswith("https://gen.example/local/queue/")


def test_the_embedded_runtime_refuses_a_forged_host_and_serves_the_app(live_server):
    base = live_server.url
    forged = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl", json={"prompt": "x", **SMALL},
                           headers={"Host": "evil.example"}, timeout=10)
    assert forged.status_code == 400
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl", json={"prompt": "x", **SMALL},
                         timeout=10).json()
    assert body["status_url"].startswith(f"{base}/local/queue/")
    # the app's own in-process calls (its listening address as the URL) go through
    with live_server.app.app_context(), backend.client(live_server.app) as client:
        result = client.subscribe("fal-ai/fast-sdxl", {"prompt": "in process", **SMALL})
    assert result.data["images"][0]["url"].startswith(f"{base}/local/cdn/files/")


class _Socket:
    def __init__(self, name):
        self.name = name

    def getsockname(self):
        return self.name


def test_host_rule_uses_the_socket_never_what_gunicorn_derived_from_host():
    # gunicorn sets SERVER_NAME from the Host header; its socket says where it listens.
    environ = {"SERVER_NAME": "evil.example", "SERVER_PORT": "8000",
               "gunicorn.socket": _Socket(("10.0.0.5", 8000)), "wsgi.url_scheme": "http"}
    assert not host_allowed("evil.example:8000", environ)
    assert host_allowed("10.0.0.5:8000", environ)
    assert host_allowed("localhost:8000", environ)
    assert not host_allowed("localhost:9000", environ)
    assert host_allowed("evil.example:8000", environ, ["evil.example"])
    assert host_allowed("anything:1", environ, ["*"])
    # Werkzeug: the bound address in SERVER_NAME, the connection's own address in its socket
    environ = {"SERVER_NAME": "0.0.0.0", "SERVER_PORT": "5000", "wsgi.url_scheme": "http",
               "werkzeug.socket": _Socket(("192.168.1.20", 5000))}
    assert host_allowed("192.168.1.20:5000", environ)
    assert not host_allowed("0.0.0.0:5000", environ)
    assert host_allowed("[::1]:5000", environ)
    assert not host_allowed("box.lan:5000", environ)
    assert host_allowed("box.lan:5000", environ, ["box.lan:5000"])


# -- 4. webhooks and input fetches reach public addresses only ------------------------------


def test_a_loopback_webhook_is_refused_and_its_receiver_never_called(local_runtime, recorder):
    answer = requests.post(f"{local_runtime.url}/queue/fal-ai/fast-sdxl",
                           params={"fal_webhook": recorder.url + "/hook"},
                           json={"prompt": "x", **SMALL}, timeout=10)
    assert answer.status_code == 422, answer.text
    (item,) = answer.json()["detail"]
    assert item["loc"] == ["query", "fal_webhook"] and "public" in item["msg"]
    # refused before anything was stored: no job, so no delivery ever
    assert job_count(local_runtime) == 0
    rows = local_runtime.runtime.db.connect().execute("SELECT COUNT(*) FROM deliveries")
    assert rows.fetchone()[0] == 0
    assert recorder.hits == []


@pytest.mark.parametrize("template", [
    "http://localhost:{port}/hook", "http://127.1:{port}/hook", "http://0x7f000001:{port}/hook",
    "http://2130706433:{port}/hook", "http://017700000001:{port}/hook",
    "http://[::1]:{port}/hook", "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://0.0.0.0:{port}/hook", "http://127.0.0.1:{port}/hook",
    "http://10.1.2.3/hook", "https://172.16.0.1/hook", "http://192.168.1.1:8080/hook",
    "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/hook",
    "http://[fe80::1]/hook", "http://[fd00::1]/hook", "http://[64:ff9b::7f00:1]/hook",
])
def test_private_webhook_addresses_are_refused_without_a_connection(
        loopback_only, local_runtime, recorder, template):
    url = template.format(port=recorder.port)
    answer = requests.post(f"{local_runtime.url}/queue/fal-ai/fast-sdxl",
                           params={"fal_webhook": url}, json={"prompt": "x", **SMALL},
                           timeout=10)
    assert answer.status_code == 422, (url, answer.text)
    assert answer.json()["detail"][0]["loc"] == ["query", "fal_webhook"]
    assert job_count(local_runtime) == 0
    assert recorder.hits == [] and loopback_only.attempts == []


def test_a_rebinding_resolver_cannot_turn_a_webhook_to_loopback(
        loopback_only, local_runtime, recorder, rebinding):
    hook = f"http://rebind.test:{recorder.port}/hook"
    body = requests.post(f"{local_runtime.url}/queue/fal-ai/fast-sdxl",
                         params={"fal_webhook": hook}, json={"prompt": "x", **SMALL},
                         timeout=10).json()  # a public answer at submit: accepted
    assert rebinding
    conn = local_runtime.runtime.db.connect()

    def delivery_attempted():
        return conn.execute("SELECT attempts, last_error FROM deliveries WHERE request_id = ?",
                            (body["request_id"],)).fetchone()

    def tried():
        row = delivery_attempted()
        return row if row is not None and row["attempts"] > 0 else None

    row = wait_until(tried, timeout=20, message="the delivery attempt")
    # the delivery resolved again, got 127.0.0.1, refused it, and gave up for good
    assert "refused" in row["last_error"]
    assert row["attempts"] == MAX_ATTEMPTS
    assert recorder.hits == []
    assert rebinding == ["rebind.test", "rebind.test"]  # once at submit, once to deliver
    assert loopback_only.attempts == []  # nothing connected to, public or not


def test_a_rebinding_resolver_cannot_turn_an_input_fetch_to_loopback(
        loopback_only, recorder, rebinding):
    url = f"http://rebind.test:{recorder.port}/image.png"
    with pytest.raises(inputs.InputFileError):
        inputs.fetch_public(url, limit=1000)
    assert recorder.hits == []
    # one resolution: the public answer is what the connection went to (refused here by the
    # guard, as the sandbox has no network); loopback, answered later, was never reached
    assert rebinding == ["rebind.test"]
    assert loopback_only.attempts == [(PUBLIC_IP, recorder.port)]


def test_a_public_session_refuses_a_name_that_resolves_to_loopback(
        loopback_only, recorder, rebinding):
    rebinding.append("first answer already given")  # from now on rebind.test is 127.0.0.1
    with netguard.public_session() as session, pytest.raises(requests.ConnectionError) as exc:
        session.get(f"http://rebind.test:{recorder.port}/x", timeout=5)
    assert netguard.refusal(exc.value) is not None
    assert recorder.hits == [] and loopback_only.attempts == []


def test_an_input_fetch_from_loopback_is_refused(loopback_only, local_runtime, recorder):
    for url in (f"http://127.0.0.1:{recorder.port}/in.png", f"http://localhost:{recorder.port}/x",
                f"http://[::1]:{recorder.port}/x", f"http://127.1:{recorder.port}/x"):
        with pytest.raises(inputs.InputFileError, match="private or local"):
            inputs.fetch_public(url, limit=1000)
    assert recorder.hits == [] and loopback_only.attempts == []


def test_every_address_of_a_name_is_checked(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "mixed.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(netguard.AddressRefused):
        netguard.resolve_public("mixed.test", 80)
    assert netguard.resolve_public(PUBLIC_IP, 80) == [(socket.AF_INET, PUBLIC_IP)]
    for address in ("::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::", "fe80::1",
                    "100.64.0.1", "0.0.0.0", "192.0.2.1"):
        assert not netguard.is_public(address), address


def test_an_allowed_prefix_is_delivered(local_config, recorder):
    prefix = recorder.url + "/hooks/app"
    config = local_config | {"FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS": [prefix]}
    with serve_local_runtime(config) as server:
        body = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                             params={"fal_webhook": prefix + "?x=1"},
                             json={"prompt": "x", **SMALL}, timeout=10)
        assert body.status_code == 200, body.text
        wait_until(lambda: recorder.hits, timeout=20, message="the allowed delivery")
        assert recorder.hits == [("POST", "hooks/app")]
        # only under the prefix: not beside it, above it, through dot segments or credentials
        for url in (recorder.url + "/hooks/application", recorder.url + "/hooks",
                    recorder.url + "/hooks/app/../../local/queue/x",
                    recorder.url + "/hooks/app/%2e%2e/x",
                    recorder.url.replace("127.0.0.1", "user:pw@127.0.0.1") + "/hooks/app",
                    recorder.url.replace("http://", "https://") + "/hooks/app"):
            refused = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                                    params={"fal_webhook": url},
                                    json={"prompt": "x", **SMALL}, timeout=10)
            assert refused.status_code == 422, url
        # the embedding app adds its own at run time
        server.runtime.allow_webhook_prefix(recorder.url + "/webhooks/fal")
        later = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                              params={"fal_webhook": recorder.url + "/webhooks/fal"},
                              json={"prompt": "x", **SMALL}, timeout=10)
        assert later.status_code == 200
        wait_until(lambda: ("POST", "webhooks/fal") in recorder.hits, timeout=20,
                   message="the delivery to the app's own prefix")


def test_webhook_policy_matches_whole_segments():
    policy = WebhookPolicy(["http://127.0.0.1:5000/webhooks/fal"])
    assert policy.allowed("http://127.0.0.1:5000/webhooks/fal")
    assert policy.allowed("http://127.0.0.1:5000/webhooks/fal/x?y=1")
    assert policy.allowed("HTTP://127.0.0.1:5000/webhooks/fal")
    for url in ("http://127.0.0.1:50001/webhooks/fal", "http://127.0.0.1:5000/webhooks/falx",
                "http://127.0.0.1:5000@evil.example/webhooks/fal",
                "http://127.0.0.1:5000/webhooks/fal/../../admin",
                "http://localhost:5000/webhooks/fal", "https://127.0.0.1:5000/webhooks/fal"):
        assert not policy.allowed(url), url
    with pytest.raises(ValueError):
        policy.allow("ftp://x/")


def test_the_app_allows_its_own_webhook_url(app):
    from falweb import webhooks

    with app.test_request_context(base_url="http://127.0.0.1:5123"):
        hook = webhooks.webhook_url()
    runtime = backend.embedded_runtime(app)
    assert runtime.webhooks.check(hook) is True  # allowed as local
    assert not runtime.webhooks.allowed("http://127.0.0.1:5123/local/queue/x")


# -- 6. LoRA and embedding paths stay in the weights folders ------------------------------


@pytest.fixture
def weights(tmp_path):
    root = tmp_path / "weights"
    (root / "lora").mkdir(parents=True)
    (root / "lora" / "pytorch_lora_weights.safetensors").write_bytes(b"lora")
    (root / "emb.safetensors").write_bytes(b"emb")
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"secret")
    (root / "escape.safetensors").symlink_to(secret)
    (root / "linked").mkdir()
    (root / "linked" / "only.safetensors").symlink_to(secret)
    (root / "outside-dir").symlink_to(tmp_path)
    return root, secret


def test_weights_paths_stay_inside_the_weights_folders(weights):
    from falweb.local.engines.weights import weights_file

    root, secret = weights
    field = "loras[0].path"
    preferred = "pytorch_lora_weights.safetensors"
    good = os.path.realpath(root / "lora" / preferred)
    for value in (str(root / "lora" / preferred), str(root / "lora"), "lora", "lora/" + preferred,
                  "file://" + str(root / "lora")):
        assert weights_file(value, field, [str(root)], preferred) == good
    assert weights_file("emb.safetensors", field, [str(root)], preferred) == \
        os.path.realpath(root / "emb.safetensors")
    for value in (str(secret), "../secret.safetensors", str(root / ".." / "secret.safetensors"),
                  "lora/../../secret.safetensors", "escape.safetensors", "linked",
                  "outside-dir/secret.safetensors", "file://" + str(secret),
                  "https://example.com/x.safetensors", "/etc/passwd", "missing.safetensors",
                  "", "lora\\..\\..\\secret.safetensors"):
        with pytest.raises(InvalidInput) as refused:
            weights_file(value, field, [str(root)], preferred)
        assert refused.value.field == field, value


def test_the_engine_refuses_outside_weights_before_loading_anything(weights):
    from falweb.local.engines.diffusers_engine import DiffusersEngine

    root, secret = weights
    engine = DiffusersEngine.__new__(DiffusersEngine)  # no torch needed up to the loading
    engine.weights_dirs = [str(root)]
    loaded = []

    class Pipe:
        def load_lora_weights(self, *args, **kwargs):
            loaded.append(args)

    class Ctx:
        def log(self, *args):
            pass

    for index, path in enumerate((str(secret), str(root / "escape.safetensors"))):
        with pytest.raises(InvalidInput) as refused:
            engine._load_loras(Pipe(), [{"path": path}] * (index + 1), Ctx())
        assert refused.value.field == "loras[0].path"
    with pytest.raises(InvalidInput) as refused:
        engine._load_loras(Pipe(), [{"path": "lora"}, {"path": str(secret)}], Ctx())
    assert refused.value.field == "loras[1].path"
    assert [os.path.basename(args[0]) for args in loaded] == ["lora"]


def test_the_weights_check_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from falweb.local.engines.weights import weights_file\n"
            "from falweb.local.engines.diffusers_engine import DiffusersEngine\n"
            "assert sys.modules['torch'] is None")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_default_weights_folder_is_in_the_instance(local_config):
    from falweb.local.runtime import weights_dirs

    assert weights_dirs(local_config) == [os.path.join(local_config["FALWEB_INSTANCE_PATH"],
                                                       "weights")]
    assert weights_dirs(local_config | {"FALWEB_LOCAL_WEIGHTS_DIRS": ["/w"]}) == ["/w"]


def test_another_process_delivers_a_webhook_allowed_at_submit(local_config, recorder):
    # The job records that its URL was allowed: a runtime on the same folder without the
    # setting (another gunicorn worker, or after a restart) that delivers it still may.
    config = local_config | {"FALWEB_LOCAL_WORKERS": 0}
    first = create_local_app(config | {"FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS": [recorder.url]})
    try:
        with ServerThread(first) as server:
            body = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                                 params={"fal_webhook": recorder.url + "/hook"},
                                 json={"prompt": "x", **SMALL}, timeout=10).json()
    finally:
        runtime_of(first).close()
    with serve_local_runtime(local_config) as other:
        wait_status(f"{other.url}/queue/fal-ai/fast-sdxl/requests/{body['request_id']}/status")
        wait_until(lambda: recorder.hits, timeout=20, message="the delivery")
    assert recorder.hits == [("POST", "hook")]
