"""fal's official JavaScript client, in Node, through falweb's proxy to fal apps the
embedded runtime hosts: subscribe (with logs and a file from runtime storage), queue with
a webhook, cancel mid-run, run, stream and realtime. Skips without node, tests/js/node_modules or
the fal SDK's virtualenv."""

import json
import subprocess
import time

import pytest

from falweb import backend
from falweb.testing import serve_app
from falweb.testing import wait_until
from tests.apps_helpers import EXAMPLES
from tests.apps_helpers import FAL_VENV
from tests.apps_helpers import WebhookReceiver
from tests.apps_helpers import healthy
from tests.apps_helpers import require_fal_sdk
from tests.test_proxy_js import JS_DIR
from tests.test_proxy_js import ROUTE
from tests.test_proxy_js import _node_or_skip

pytestmark = [pytest.mark.node, pytest.mark.slow]

SCRIPT = JS_DIR / "apps_client.mjs"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    node = _node_or_skip()
    require_fal_sdk()
    receiver = WebhookReceiver()
    config = {"TESTING": True, "FALWEB_BACKEND": "local",
              "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("apps-js")),
              "FALWEB_LOCAL_WORKERS": 3, "FALWEB_APPS_VENV": str(FAL_VENV),
              "FALWEB_APPS": [f"{EXAMPLES}/fal_text_to_image.py::TextToImage",
                              f"{EXAMPLES}/fal_streaming.py::StreamingText",
                              f"{EXAMPLES}/fal_realtime.py::RealtimeSketch"]}
    try:
        with serve_app(config) as server:
            runtime = backend.embedded_runtime(server.app)
            runtime.allow_webhook_prefix(receiver.url)
            healthy(runtime)
            realtime_base = server.url.replace("http://", "ws://") + "/local/run/"
            done = subprocess.run(["node", str(SCRIPT), server.url + ROUTE, receiver.url,
                                   realtime_base],
                                  capture_output=True, text=True, timeout=120, cwd=JS_DIR,
                                  executable=node)
            assert done.returncode == 0, done.stderr[-4000:]
            out = json.loads(done.stdout)
            wait_until(lambda: receiver.bodies, timeout=30, message="the webhook")
            time.sleep(0.3)
            out["webhooks"] = list(receiver.bodies)
            out["base"] = server.url
            yield out
    finally:
        receiver.close()


def ok(result):
    assert "error" not in result, result
    return result


def test_subscribe_gets_logs_and_a_png_from_runtime_storage(outcome):
    result = ok(outcome["subscribe"])
    assert result["statuses"][-1] == "COMPLETED"
    assert [m for m in result["logs"] if m.startswith("step ")] == ["step 1/2", "step 2/2"]
    assert result["data"]["images"][0]["url"].startswith(outcome["base"] + "/local/cdn/files/")
    assert result["file"]["status"] == 200 and result["file"]["type"] == "image/png"


def test_queue_with_a_webhook_through_the_proxy(outcome):
    request_id = ok(outcome["webhook"])["requestId"]
    bodies = [b for b in outcome["webhooks"] if b["request_id"] == request_id]
    assert len(bodies) == 1 and bodies[0]["status"] == "OK"
    assert bodies[0]["payload"]["prompt"] == "from node"


def test_cancel_mid_run(outcome):
    result = ok(outcome["cancel"])
    assert result["status"]["status"] == "COMPLETED"
    assert result["status"]["error_type"] == "request_cancelled"
    assert result["result"]["status"] == 400


def test_run(outcome):
    result = ok(outcome["run"])
    assert result["requestId"]
    assert result["data"]["images"][0]["content_type"] == "image/png"


def test_stream(outcome):
    result = ok(outcome["stream"])
    assert [e.get("step") for e in result["events"][:3]] == [1, 2, 3]
    assert result["done"] == {"text": "js-1 js-2 js-3", "steps": 3}


def test_realtime_with_a_token_from_the_proxy(outcome):
    result = ok(outcome["realtime"])
    assert result["errors"] == []
    assert [r["seed"] for r in result["results"]] == [0, 1, 2]
    assert all(r["prompt"] == "js rt" and r["bytes"] > 0 for r in result["results"])
