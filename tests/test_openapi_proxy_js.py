"""fal's official JavaScript client, through falweb's proxy, gets outputs of the documented
shape from endpoints known only by their OpenAPI documents: a video one (fal's kling
document) and an audio one (a document written here)."""

import io
import json
import subprocess
import wave

import av
import pytest
import requests

from falweb import backend
from falweb import create_app
from falweb.schemas.catalog import documented_endpoint
from falweb.testing import ServerThread
from tests.test_openapi_catalog import tiny_document
from tests.test_proxy_js import JS_DIR
from tests.test_proxy_js import ROUTE
from tests.test_proxy_js import _node_or_skip

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = tmp_path_factory.mktemp("proxy-any")
    (instance / "openapi").mkdir()
    (instance / "openapi" / "voice.json").write_text(json.dumps(tiny_document("acme/voice")))
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(instance),
                      "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0,
                      "FALWEB_LOCAL_WORKERS": 2})
    server = ServerThread(app)
    app.config["FALWEB_SELF_URL"] = server.url
    yield server
    server.shutdown()
    backend.embedded_runtime(app).close()


def subscribe(server, endpoint_id, input):
    node = _node_or_skip()
    done = subprocess.run([node, str(JS_DIR / "any_endpoint.mjs"), server.url + ROUTE,
                           endpoint_id, json.dumps(input)],
                          capture_output=True, text=True, timeout=60, cwd=JS_DIR)
    assert done.returncode == 0, done.stderr[-4000:]
    answer = json.loads(done.stdout)
    assert "error" not in answer, answer
    return answer


def test_a_video_endpoint_through_the_proxy(server):
    endpoint_id = "fal-ai/kling-video/v1/standard/text-to-video"
    answer = subscribe(server, endpoint_id, {"prompt": "waves at night", "duration": "5"})
    data = answer["data"]
    assert answer["requestId"]
    assert set(data) == {"video"}
    assert documented_endpoint(endpoint_id).output_schema().validate(data) == {}
    assert data["video"]["content_type"] == "video/mp4"
    mp4 = requests.get(data["video"]["url"], timeout=10)
    assert mp4.status_code == 200 and mp4.headers["content-type"].startswith("video/mp4")
    with av.open(io.BytesIO(mp4.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_an_audio_endpoint_through_the_proxy(server):
    answer = subscribe(server, "acme/voice", {"text": "hello", "speed": 1.5})
    data = answer["data"]
    assert set(data) == {"audio"}
    assert documented_endpoint("acme/voice").output_schema().validate(data) == {}
    clip = requests.get(data["audio"]["url"], timeout=10)
    assert clip.status_code == 200 and clip.headers["content-type"].startswith("audio/wav")
    with wave.open(io.BytesIO(clip.content)) as audio:
        assert audio.getnframes() > 0 and audio.getframerate() == 16000


def test_the_js_client_sees_the_422_naming_the_field(server):
    node = _node_or_skip()
    done = subprocess.run([node, str(JS_DIR / "any_endpoint.mjs"), server.url + ROUTE,
                           "acme/voice", json.dumps({"speed": 7})],
                          capture_output=True, text=True, timeout=60, cwd=JS_DIR)
    answer = json.loads(done.stdout)
    assert answer["status"] == 422
    assert {tuple(item["loc"]) for item in answer["body"]["detail"]} == {
        ("body", "text"), ("body", "speed")}
