"""falweb's native API (``falweb.apps``): apps written like fal apps, served by the same
runtime with the same protocol, outputs serialised as fal's, ported by changing imports."""

import io
import json

import msgpack
import pytest
import requests
import websocket
from PIL import Image

from falweb.testing import wait_until
from tests.apps_helpers import EXAMPLES
from tests.apps_helpers import TEST_APPS
from tests.apps_helpers import healthy
from tests.apps_helpers import hosting
from tests.local_helpers import sse_events
from tests.local_helpers import wait_status

pytest.importorskip("pydantic", reason="falweb.apps needs pydantic (the test extra has it)")

pytestmark = pytest.mark.slow

T2I = "local/text-to-image"
TOOLS = "local/native-tools"


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A runtime hosting native apps only: no fal SDK anywhere."""
    apps = [f"{EXAMPLES}/native_text_to_image.py::TextToImage",
            f"{TEST_APPS}/native_apps.py::NativeTools",
            f"{TEST_APPS}/native_apps.py::NativeSetupCrash",
            f"{TEST_APPS}/native_apps.py::NativeSleeper"]
    with hosting(tmp_path_factory.mktemp("native"), apps) as server:
        wait_until(lambda: {a["id"]: a["state"] for a in server.runtime.apps.state()}
                   .get(TOOLS) == "healthy", timeout=60, message="native apps healthy")
        yield server


def _code_lines(path):
    # Everything but the module docstring, the import lines and blank lines (import groups
    # sort differently).
    text = path.read_text()
    body = text.split('"""', 2)[2]
    return [line for line in body.splitlines()
            if line.strip() and not line.lstrip().startswith(("import ", "from "))]


def test_the_native_example_is_the_fal_example_with_other_imports():
    assert _code_lines(EXAMPLES / "native_text_to_image.py") == \
        _code_lines(EXAMPLES / "fal_text_to_image.py")


def test_queue_logs_and_a_stored_image(native):
    answer = requests.post(f"{native.url}/queue/{T2I}",
                           json={"prompt": "native", "seed": 1, "width": 40, "height": 30,
                                 "num_inference_steps": 2}, timeout=10)
    status = wait_status(answer.json()["status_url"])
    assert [line["message"] for line in status["logs"]] == ["step 1/2", "step 2/2"]
    result = requests.get(answer.json()["response_url"], timeout=10).json()
    image = result["images"][0]
    # fal's Image JSON (the queue's answer sorts keys, as Flask's JSON does)
    assert sorted(image) == sorted(["url", "content_type", "file_name", "file_size",
                                    "width", "height"])
    assert image["url"].startswith(f"{native.url}/cdn/files/")
    data = requests.get(image["url"], timeout=10).content
    assert len(data) == image["file_size"]
    assert Image.open(io.BytesIO(data)).size == (40, 30) == (image["width"], image["height"])


def test_an_uploaded_input_image_reaches_the_native_app(native):
    buffer = io.BytesIO()
    Image.new("RGB", (12, 8)).save(buffer, format="PNG")
    start = requests.post(f"{native.url}/rest/storage/upload/initiate",
                          json={"content_type": "image/png"}, timeout=10).json()
    requests.put(start["upload_url"], data=buffer.getvalue(), timeout=10).raise_for_status()
    answer = requests.post(f"{native.url}/queue/{T2I}", json={
        "prompt": "over", "image_url": start["file_url"], "width": 32, "height": 32},
        timeout=10)
    status = wait_status(answer.json()["status_url"])
    assert "input image 12x8" in [line["message"] for line in status["logs"]]


def test_invalid_input_is_fastapis_422_shape(native):
    answer = requests.post(f"{native.url}/run/{T2I}", json={"width": "wide"}, timeout=10)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert {(item["type"], tuple(item["loc"])) for item in detail} == {
        ("missing", ("body", "prompt")), ("int_parsing", ("body", "width"))}


def test_realtime_frames(native):
    ws = websocket.create_connection(
        native.url.replace("http", "ws") + f"/run/{TOOLS}/realtime", timeout=10)
    try:
        ws.send_binary(msgpack.packb({"text": "hi", "n": 21}))
        output = msgpack.unpackb(ws.recv(), raw=False)
        assert output == {"text": "echo:hi", "n": 42, "data": b"hi"}
        assert json.loads(ws.recv())["action"] == "timings"
        ws.send_binary(msgpack.packb({"n": "x"}))
        error = json.loads(ws.recv())
        assert error["type"] == "x-fal-error" and error["error"] == "VALIDATION_ERROR"
        assert "text" in error["reason"]
    finally:
        ws.close()


def test_sse_stream(native):
    answer = requests.post(f"{native.url}/run/{TOOLS}/stream", json={"text": "t", "n": 2},
                           stream=True, timeout=10)
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert sse_events(answer) == [{"step": 1}, {"step": 2}, {"text": "t"}]


def test_file_from_bytes_lands_in_runtime_storage(native):
    answer = requests.post(f"{native.url}/run/{TOOLS}/file", json={"text": "stored"},
                           timeout=10).json()["file"]
    assert list(answer) == ["url", "content_type", "file_name", "file_size"]
    assert requests.get(answer["url"], timeout=10).content == b"stored"


def test_file_outside_the_runtime_is_a_data_uri(monkeypatch):
    from falweb.apps import File

    monkeypatch.delenv("FAL_API_SOCKET", raising=False)
    file = File.from_bytes(b"abc", "text/plain")
    assert file.url == "data:text/plain;base64,YWJj" and file.file_size == 3


def test_a_crash_in_setup_says_why(native):
    app = wait_until(lambda: next((a for a in native.runtime.apps.state()
                                   if a["id"] == "local/native-setup-crash"
                                   and a["state"] == "failed"), None), timeout=30)
    assert "ValueError: no such model: tiny-sd" in app["error"]


def test_native_and_fal_outputs_have_the_same_shape(native, tmp_path):
    from tests.apps_helpers import require_fal_sdk

    require_fal_sdk()
    with hosting(tmp_path, [f"{EXAMPLES}/fal_text_to_image.py::TextToImage"]) as fal_server:
        healthy(fal_server.runtime)
        input = {"prompt": "same", "seed": 9, "width": 32, "height": 16}
        ours = requests.post(f"{native.url}/run/{T2I}", json=input, timeout=30).json()
        theirs = requests.post(f"{fal_server.url}/run/{T2I}", json=input, timeout=30).json()
    # A direct call passes the app's bytes through: the same keys in the same order.
    assert list(ours) == list(theirs)
    assert list(ours["images"][0]) == list(theirs["images"][0]) == [
        "url", "content_type", "file_name", "file_size", "width", "height"]
    for key in ("content_type", "width", "height"):
        assert ours["images"][0][key] == theirs["images"][0][key]


def test_the_index_and_healthz_show_each_apps_state_and_error(tmp_path):
    from falweb.testing import serve_app

    config = {"TESTING": True, "FALWEB_BACKEND": "local", "FALWEB_INSTANCE_PATH": str(tmp_path),
              "FALWEB_APPS": [f"{TEST_APPS}/native_apps.py::NativeSetupCrash",
                              f"{TEST_APPS}/native_apps.py::NativeTools"]}
    with serve_app(config) as server:
        def states():
            local = requests.get(f"{server.url}/healthz", timeout=10).json()["local"]
            found = {app["id"]: app for app in local["apps"]}
            return found if found[TOOLS]["state"] == "healthy" and \
                found["local/native-setup-crash"]["state"] == "failed" else None

        apps = wait_until(states, timeout=60, message="one app healthy, one failed")
        assert "ValueError: no such model: tiny-sd" in apps["local/native-setup-crash"]["error"]
        page = requests.get(server.url + "/", timeout=10).text
    section = page.split('id="hosted-apps"', 1)[1].split("</section>", 1)[0]
    assert "local/native-tools" in section and "healthy" in section
    assert "local/native-setup-crash" in section and "failed" in section
    assert "ValueError: no such model: tiny-sd" in section


def test_max_concurrency_bounds_the_calls_an_app_runs_at_once(native):
    # NativeTools says max_concurrency=1; the runtime has 3 workers and the app's server
    # would run the calls side by side.
    submitted = [requests.post(f"{native.url}/queue/{TOOLS}/slow", json={"text": str(i), "n": 2},
                               timeout=10).json() for i in range(3)]
    for job in submitted:
        assert wait_status(job["status_url"]).get("error") is None
    peak = requests.post(f"{native.url}/run/{TOOLS}/peak", json={"text": "?"}, timeout=10)
    assert peak.json() == {"peak": 1}


def test_cancel_drops_the_call_of_an_app_without_a_cancel_route(native):
    answer = requests.post(f"{native.url}/queue/local/native-sleeper",
                           json={"text": "z", "n": 600}, timeout=10).json()

    def ticking():
        body = requests.get(answer["status_url"], params={"logs": 1}, timeout=10).json()
        return body.get("logs")

    wait_until(ticking, timeout=30, message="the app's first tick")
    cancel = requests.put(answer["cancel_url"], timeout=10)
    assert cancel.status_code == 202
    status = wait_status(answer["status_url"], timeout=15)
    assert status["error_type"] == "request_cancelled"
    assert requests.get(answer["response_url"], timeout=10).status_code == 400


@pytest.mark.parametrize(("send", "status", "named"), [
    ({"data": b"[1, 2]"}, 422, "Input must be a JSON object"),
    ({"data": b"{not json"}, 422, "Expecting a JSON body"),
    ({"json": {}, "params": {"fal_webhook": "ftp://x"}}, 422, "fal_webhook"),
    ({"json": {}, "params": {"fal_webhook": "http://127.0.0.1:9/hook"}}, 422, "fal_webhook"),
    ({"json": {}, "headers": {"x-fal-queue-priority": "urgent"}}, 422,
     "x-fal-queue-priority"),
    ({"json": {}, "headers": {"x-fal-request-timeout": "-1"}}, 422, "x-fal-request-timeout"),
])
def test_a_bad_submit_is_a_clear_4xx(native, send, status, named):
    answer = requests.post(f"{native.url}/queue/{T2I}", timeout=10, **send)
    assert answer.status_code == status
    assert named in answer.text


def test_other_methods_and_unknown_routes(native):
    assert requests.get(f"{native.url}/queue/{T2I}", timeout=10).status_code == 405
    missing = requests.post(f"{native.url}/run/{T2I}/nowhere", json={}, timeout=10)
    assert missing.status_code == 404 and missing.json()["detail"] == "Path /nowhere not found"
    unknown = requests.get(f"{native.url}/queue/{T2I}/requests/nope/status", timeout=10)
    assert unknown.status_code == 404
