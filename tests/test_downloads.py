"""Downloading a result's images as files, whatever host or form they came in."""

import base64
import io

import pytest
import requests
from PIL import Image

from falweb import create_app
from falweb import history
from falweb.testing import ServerThread
from falweb.testing import serve_app
from tests.local_helpers import wait_status


def finished_request(app, base, input):
    body = requests.post(f"{base}/local/queue/fal-ai/fast-sdxl",
                         json={"num_inference_steps": 1, "image_size": "square", **input},
                         timeout=10).json()
    wait_status(body["status_url"])
    result = requests.get(body["response_url"], timeout=10).json()
    with app.app_context():
        history.add(body["request_id"], "fal-ai/fast-sdxl", input, "local")
        history.update(body["request_id"], status="COMPLETED", result=result)
    return body["request_id"], result


def test_stored_image_downloads_as_an_attachment(app, live_server):
    request_id, result = finished_request(app, live_server.url, {"prompt": "file", "seed": 3})
    answer = requests.get(f"{live_server.url}/requests/{request_id}/images/0", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == \
        f'attachment; filename="{request_id}-0.jpg"'
    assert answer.content == requests.get(result["images"][0]["url"], timeout=10).content
    assert Image.open(io.BytesIO(answer.content)).size == (512, 512)
    page = requests.get(f"{live_server.url}/requests/{request_id}", timeout=10).text
    assert f"/requests/{request_id}/images/0" in page


def test_data_uri_images_are_decoded(app, live_server):
    request_id, result = finished_request(app, live_server.url,
                                          {"prompt": "inline", "sync_mode": True, "format": "png"})
    answer = requests.get(f"{live_server.url}/requests/{request_id}/images/0", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    assert answer.content == base64.b64decode(result["images"][0]["url"].split(",", 1)[1])


def test_unknown_images_and_foreign_hosts(app, client):
    with app.app_context():
        history.add("rid-x", "fal-ai/fast-sdxl", {"prompt": "x"}, "local")
        history.update("rid-x", status="COMPLETED",
                       result={"images": [{"url": "https://example.com/cat.png"}]})
    assert client.get("/requests/rid-x/images/1").status_code == 404
    assert client.get("/requests/nope/images/0").status_code == 404
    foreign = client.get("/requests/rid-x/images/0")
    # Never fetched by the server, and not a redirect either: that would make this app's
    # address a link to wherever a result points.
    assert foreign.status_code == 404
    assert "Location" not in foreign.headers
    assert "cannot be downloaded through this app" in foreign.text


# -- hostile results ------------------------------------------------------------------------


class Recorder:
    """A loopback server standing in for a local runtime elsewhere (``FALWEB_LOCAL_URL``):
    it records the raw path of every request and answers each with a small PNG."""

    PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 32

    def __init__(self):
        self.hits = []

    def app(self, environ, start_response):
        self.hits.append(environ.get("REQUEST_URI") or environ.get("PATH_INFO"))
        start_response("200 OK", [("Content-Type", "image/png")])
        return [self.PNG]


@pytest.fixture
def recorder():
    recorder = Recorder()
    with ServerThread(recorder.app) as server:
        recorder.url = server.url
        yield recorder


@pytest.fixture
def remote_runtime_app(tmp_path, recorder):
    """The app on a local runtime "elsewhere": the recorder."""
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "remote"),
                      "FALWEB_BACKEND": "local", "FALWEB_LOCAL_URL": recorder.url,
                      "WTF_CSRF_ENABLED": False})
    return app


def store_images(app, request_id, *urls):
    with app.app_context():
        history.add(request_id, "fal-ai/fast-sdxl", {"prompt": "x"}, "local")
        history.update(request_id, status="COMPLETED",
                       result={"images": [{"url": url, "content_type": "image/png"}
                                          for url in urls]})


# Paths after the runtime's base that start like one of its files and go somewhere else.
TRAVERSALS = [
    "/cdn/files/../secret",
    "/cdn/files/abc/../../secret",
    "/cdn/files/abc/x.png/../../../secret",
    "/cdn/files/%2e%2e/%2e%2e/secret",
    "/cdn/files/%2E%2E%2F%2E%2E%2Fsecret/x.png",
    "/cdn/files/abc/..%2f..%2fsecret",
    "/cdn/files/abc%2f..%2f..%2fsecret/x.png",
    "/cdn/files/..\\..\\secret/x.png",
    "/cdn/files/abc/./../../secret",
]


def test_traversal_out_of_the_runtimes_files_is_never_fetched(remote_runtime_app, recorder):
    client = remote_runtime_app.test_client()
    store_images(remote_runtime_app, "rid-ok", recorder.url + "/cdn/files/abc123/image.png")
    assert client.get("/requests/rid-ok/images/0").data == Recorder.PNG
    assert recorder.hits == ["/cdn/files/abc123/image.png"]  # a real file still downloads
    recorder.hits.clear()

    store_images(remote_runtime_app, "rid-up", *(recorder.url + path for path in TRAVERSALS))
    for index, path in enumerate(TRAVERSALS):
        answer = client.get(f"/requests/rid-up/images/{index}")
        assert answer.status_code == 404, path
        assert "Location" not in answer.headers, path
    # (the 404 page asks the runtime's /healthz whether its images are synthetic)
    assert [hit for hit in recorder.hits if hit != "/healthz"] == []


def test_traversal_into_the_embedded_runtimes_queue_is_refused(app, live_server):
    request_id, _ = finished_request(app, live_server.url, {"prompt": "secret", "seed": 1})
    # Without the check, this URL "inside" the runtime's files reads the queue's answer.
    queue = f"{live_server.url}/local/cdn/files/../../queue/fal-ai/fast-sdxl/requests/{request_id}"
    encoded = queue.replace("../..", "%2e%2e/%2e%2e")
    store_images(app, "rid-queue", queue, encoded)
    for index in (0, 1):
        answer = requests.get(f"{live_server.url}/requests/rid-queue/images/{index}",
                              timeout=10, allow_redirects=False)
        assert answer.status_code == 404
        assert b"secret" not in answer.content and b"request_id" not in answer.content


OPEN_REDIRECTS = [
    "https://example.com/cat.png",
    "http://attacker.test/x.png",
    "//attacker.test/x.png",
    "https://v3.fal.media.attacker.test/x.png",
    "https://attacker.test\\@v3.fal.media/x.png",
    "https://v3.fal.media@attacker.test/x.png",
    "https://fal.media:8443/x.png",
    "javascript:alert(document.domain)",
    "ftp://fal.media/x.png",
]


def test_no_redirect_to_wherever_a_result_points(app, client, no_dns):
    store_images(app, "rid-redirect", *OPEN_REDIRECTS)
    for index, url in enumerate(OPEN_REDIRECTS):
        answer = client.get(f"/requests/rid-redirect/images/{index}")
        assert answer.status_code == 404, url
        assert "Location" not in answer.headers, url


def test_a_data_uri_that_is_no_image_is_not_served_as_its_type(app, client):
    page = base64.b64encode(b"<script>alert(document.domain)</script>").decode()
    store_images(app, "rid-html", f"data:text/html;base64,{page}")
    answer = client.get("/requests/rid-html/images/0")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.headers["Content-Disposition"].startswith("attachment;")


def test_runtime_files_named_on_the_public_url_still_download(tmp_path, no_dns):
    # Behind a reverse proxy the runtime names its files on FALWEB_PUBLIC_URL + /local; the
    # app fetches the same file from its runtime, not from that address.
    public = "https://gen.example.com"
    config = {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "public"),
              "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0,
              "FALWEB_PUBLIC_URL": public}
    with serve_app(config) as server:
        body = requests.post(f"{server.url}/local/queue/fal-ai/fast-sdxl", timeout=10,
                             json={"prompt": "behind", "num_inference_steps": 1,
                                   "image_size": "square"}).json()
        wait_status(body["status_url"].replace(public, server.url))
        result = requests.get(body["response_url"].replace(public, server.url),
                              timeout=10).json()
        assert result["images"][0]["url"].startswith(public + "/local/cdn/files/")
        store_images(server.app, "rid-public", result["images"][0]["url"])
        answer = requests.get(f"{server.url}/requests/rid-public/images/0", timeout=10)
        assert answer.status_code == 200
        assert Image.open(io.BytesIO(answer.content)).size == (512, 512)
