"""Storage flows of fal-protocol §9 and the Python client's CDN flow, over HTTP."""

import hashlib
import os

import pytest
import requests

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.testing import ServerThread


@pytest.mark.parametrize("path", ["/rest/storage/upload/initiate",
                                  "/rest/storage/upload/initiate?storage_type=fal-cdn-v3"])
def test_single_upload_round_trip(local_runtime, path):
    init = requests.post(local_runtime.url + path,
                         json={"content_type": "text/plain", "file_name": "hello.txt"}, timeout=10)
    assert init.status_code == 200
    urls = init.json()
    assert set(urls) == {"upload_url", "file_url"}
    put = requests.put(urls["upload_url"], data=b"Hello, World!",
                       headers={"Content-Type": "text/plain"}, timeout=10)
    assert put.status_code == 200
    download = requests.get(urls["file_url"], timeout=10)
    assert download.content == b"Hello, World!"
    assert download.headers["content-type"].startswith("text/plain")
    assert urls["file_url"].endswith("/hello.txt")


def test_multipart_upload_round_trip(local_runtime):
    data = os.urandom(3 * 1024 * 1024 + 17)
    init = requests.post(local_runtime.url + "/rest/storage/upload/initiate-multipart"
                         "?storage_type=fal-cdn-v3",
                         json={"content_type": "application/octet-stream", "file_name": "b.bin"},
                         timeout=10).json()
    upload = init["upload_url"]
    parts = []
    size = 1024 * 1024
    for number, start in enumerate(range(0, len(data), size), start=1):
        answer = requests.put(f"{upload}/{number}", data=data[start:start + size], timeout=10)
        assert answer.status_code == 200
        body = answer.json()
        assert body["partNumber"] == number
        assert body["etag"] == hashlib.md5(data[start:start + size]).hexdigest()
        parts.append(body)
    done = requests.post(f"{upload}/complete", json={"parts": parts}, timeout=10)
    assert done.status_code == 200
    assert requests.get(init["file_url"], timeout=10).content == data


def test_multipart_rejects_a_wrong_etag_and_missing_parts(local_runtime):
    init = requests.post(local_runtime.url + "/rest/storage/upload/initiate-multipart",
                         json={"content_type": "text/plain"}, timeout=10).json()
    requests.put(init["upload_url"] + "/1", data=b"abc", timeout=10)
    bad = requests.post(init["upload_url"] + "/complete",
                        json={"parts": [{"partNumber": 1, "etag": "0" * 32}]}, timeout=10)
    assert bad.status_code == 400 and "etag" in bad.json()["detail"]
    missing = requests.post(init["upload_url"] + "/complete",
                            json={"parts": [{"partNumber": 2, "etag": ""}]}, timeout=10)
    assert missing.status_code == 400 and "Part 2" in missing.json()["detail"]
    assert requests.get(init["file_url"], timeout=10).status_code == 404


def test_uploads_above_the_limit_get_413(local_config):
    app = create_local_app(local_config | {"FALWEB_LOCAL_MAX_UPLOAD_BYTES": 1000})
    with ServerThread(app) as server:
        init = requests.post(server.url + "/rest/storage/upload/initiate",
                             json={"content_type": "text/plain"}, timeout=10).json()
        answer = requests.put(init["upload_url"], data=b"x" * 1001, timeout=10)
        assert answer.status_code == 413 and "1000" in answer.json()["detail"]

        def chunks():  # no Content-Length: the limit holds while streaming
            for _ in range(5):
                yield b"y" * 400

        answer = requests.put(init["upload_url"], data=chunks(), timeout=10)
        assert answer.status_code == 413
        assert requests.get(init["file_url"], timeout=10).status_code == 404
    runtime_of(app).close()


def test_unknown_upload_url_and_file(local_runtime):
    assert requests.put(local_runtime.url + "/cdn/uploads/nope", data=b"x",
                        timeout=10).status_code == 404
    assert requests.get(local_runtime.url + "/cdn/files/nope/x.png", timeout=10).status_code == 404


def test_initiate_validates_its_body(local_runtime):
    answer = requests.post(local_runtime.url + "/rest/storage/upload/initiate",
                           json={"content_type": "nonsense"}, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "content_type"]


def test_python_client_cdn_token_flow(local_runtime):
    token = requests.post(local_runtime.url + "/rest/storage/auth/token?storage_type=fal-cdn-v3",
                          json={}, timeout=10).json()
    assert set(token) >= {"token", "token_type", "base_url", "expires_at"}
    headers = {"Authorization": f"{token['token_type']} {token['token']}",
               "Content-Type": "image/png", "X-Fal-File-Name": "pic.png"}
    answer = requests.post(token["base_url"] + "/files/upload", data=b"\x89PNG fake",
                           headers=headers, timeout=10)
    assert answer.status_code == 200
    url = answer.json()["access_url"]
    download = requests.get(url, timeout=10)
    assert download.content == b"\x89PNG fake"
    assert download.headers["content-type"] == "image/png"

    refused = requests.post(token["base_url"] + "/files/upload", data=b"x",
                            headers={"Authorization": "Bearer forged"}, timeout=10)
    assert refused.status_code == 401

    start = requests.post(token["base_url"] + "/files/upload/multipart", headers=headers,
                          timeout=10).json()
    part = requests.put(f"{start['access_url']}/multipart/{start['uploadId']}/1", data=b"abc",
                        headers=headers, timeout=10).json()
    done = requests.post(f"{start['access_url']}/multipart/{start['uploadId']}/complete",
                         json={"parts": [part]}, headers=headers, timeout=10)
    assert done.status_code == 200
    assert requests.get(done.json()["access_url"], timeout=10).content == b"abc"
