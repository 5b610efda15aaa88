"""Tokens from /tokens/: a JSON string, scoped to apps, expiring; accepted on streams."""

import time

import requests

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.testing import ServerThread


def token(base, apps, expiration=120):
    answer = requests.post(base + "/rest/tokens/",
                           json={"allowed_apps": apps, "token_expiration": expiration}, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(answer.json(), str)
    return answer.json()


def test_token_scope(local_runtime):
    good = token(local_runtime.url, ["fast-sdxl"])
    url = local_runtime.url + "/run/fal-ai/fast-sdxl/stream"
    input = {"prompt": "x", "num_inference_steps": 1, "image_size": "square"}
    ok = requests.post(url, params={"fal_jwt_token": good}, json=input, timeout=30)
    assert ok.status_code == 200
    other = token(local_runtime.url, ["flux"])
    refused = requests.post(url, params={"fal_jwt_token": other}, json=input, timeout=10)
    assert refused.status_code == 401 and "fast-sdxl" in refused.json()["detail"]
    forged = requests.post(url, params={"fal_jwt_token": good[:-4] + "AAAA"}, json=input,
                           timeout=10)
    assert forged.status_code == 401


def test_token_expiry(local_config):
    app = create_local_app(local_config | {"FALWEB_LOCAL_MAX_TOKEN_SECONDS": 1})
    with ServerThread(app) as server:
        short = token(server.url, ["fast-sdxl"], expiration=600)  # capped to 1 s
        time.sleep(2.1)
        answer = requests.post(server.url + "/run/fal-ai/fast-sdxl/stream",
                               params={"fal_jwt_token": short}, json={"prompt": "x"}, timeout=10)
        assert answer.status_code == 401 and answer.json()["detail"] == "Token expired"
    runtime_of(app).close()


def test_token_request_is_validated(local_runtime):
    answer = requests.post(local_runtime.url + "/rest/tokens/", json={"allowed_apps": []},
                           timeout=10)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "allowed_apps"]
