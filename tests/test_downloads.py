"""Downloading a result's images as files, whatever host or form they came in."""

import base64
import io

import requests
from PIL import Image

from falweb import history
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
    assert foreign.status_code == 302  # never fetched by the server
    assert foreign.headers["Location"] == "https://example.com/cat.png"
