"""fal's official JavaScript clients, in Node, through the proxy to the real local runtime.

``tests/js/proxy_client.mjs`` runs every scenario with one client generation and prints a JSON
object; these tests assert on it. They skip (with the reason) only when ``node`` or
``tests/js/node_modules`` (``npm ci`` in ``tests/js``, done by ``make test``) is missing.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from flask import Flask

from falweb import backend
from falweb import create_app
from falweb.proxy import FalProxy
from falweb.testing import ServerThread
from tests.conftest import TEST_FAL_KEY

pytestmark = pytest.mark.node

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "proxy_client.mjs"
ROUTE = "/api/fal/proxy"


def _node_or_skip():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: fal's JS client cannot run")
    if not (JS_DIR / "node_modules" / "@fal-ai" / "client").is_dir():
        pytest.skip("tests/js/node_modules missing: run `npm ci` in tests/js (make test does)")
    return node


def run_clients(node, proxy_url, generation):
    done = subprocess.run(
        [node, str(SCRIPT), proxy_url, generation],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS_DIR,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout), done.stdout + done.stderr


@pytest.fixture(scope="module")
def falweb_server(tmp_path_factory):
    """The whole falweb app, local backend embedded, no key; steps slow enough to cancel."""
    app = create_app(
        {
            "TESTING": True,
            "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("proxy-js")),
            "FALWEB_BACKEND": "local",
            "FALWEB_LOCAL_STEP_DELAY": 0.02,
            "FALWEB_LOCAL_WORKERS": 2,
        }
    )
    server = ServerThread(app)
    app.config["FALWEB_SELF_URL"] = server.url
    yield server
    server.shutdown()
    backend.embedded_runtime(app).close()


@pytest.fixture(scope="module")
def node():
    return _node_or_skip()


@pytest.fixture(scope="module")
def client_1x(node, falweb_server):
    return run_clients(node, falweb_server.url + ROUTE, "1.x")[0]


@pytest.fixture(scope="module")
def client_0x(node, falweb_server):
    return run_clients(node, falweb_server.url + ROUTE, "0.x")[0]


def ok(result):
    assert "error" not in result, result
    return result


def assert_image_output(data):
    assert data["images"] and data["images"][0]["url"].startswith("http")
    assert isinstance(data["seed"], int)


def test_subscribe_polling(client_1x):
    result = ok(client_1x["subscribe_polling"])
    assert result["requestId"] == result["enqueued"]
    assert result["statuses"][-1] == "COMPLETED"
    assert_image_output(result["data"])


def test_subscribe_streaming(client_1x):
    result = ok(client_1x["subscribe_streaming"])
    assert result["requestId"]
    assert result["statuses"][-1] == "COMPLETED"
    assert_image_output(result["data"])


def test_queue_submit_status_result(client_1x):
    result = ok(client_1x["queue"])
    assert result["submitted"]["request_id"]
    assert result["status"]["status"] == "COMPLETED"
    assert_image_output(result["result"]["data"])
    assert result["result"]["requestId"] == result["submitted"]["request_id"]


def test_queue_cancel(client_1x):
    assert ok(client_1x["cancel"])["cancelled"] is True


def test_run(client_1x):
    result = ok(client_1x["run"])
    assert result["requestId"]  # x-fal-request-id came through the proxy
    assert_image_output(result["data"])


def test_stream_events_through_the_proxy(client_1x):
    result = ok(client_1x["stream"])
    assert result["events"] >= 2
    assert_image_output(result["done"])


def test_storage_upload(client_1x):
    result = ok(client_1x["upload"])
    assert (result["status"], result["text"]) == (200, "Hello, World!")


def test_realtime_token(client_1x):
    token = ok(client_1x["token"])["token"]
    assert isinstance(token, str) and token.count(".") == 2


def test_0x_client_generation(client_0x):
    # rest.alpha.fal.ai and storage initiate without storage_type: what 0.x sends.
    assert ok(client_0x["subscribe_polling"])["statuses"][-1] == "COMPLETED"
    assert_image_output(client_0x["subscribe_polling"]["data"])
    assert_image_output(ok(client_0x["run"])["data"])
    assert ok(client_0x["upload"])["text"] == "Hello, 0.x!"
    assert ok(client_0x["token"])["token"].count(".") == 2


def test_key_injected_never_exposed(node, local_runtime, caplog, capsys):
    """fal mode with a key, fal's hosts pointed at the local runtime: the key stays inside."""
    caplog.set_level("DEBUG")
    app = Flask("embedding")
    app.config.update(FAL_KEY=TEST_FAL_KEY, FAL_PROXY_UPSTREAM=local_runtime.url)
    FalProxy(app)
    with ServerThread(app) as server:
        out, raw = run_clients(node, server.url + ROUTE, "1.x")
    for name in ("subscribe_polling", "queue", "run", "stream", "upload", "token"):
        ok(out[name])
    captured = capsys.readouterr()
    for text in (raw, caplog.text, captured.out, captured.err):
        assert TEST_FAL_KEY not in text
        assert "test-key-secret" not in text
