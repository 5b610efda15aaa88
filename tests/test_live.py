"""Live mode: a browser-side websocket through the bridge to the local runtime's realtime."""

import json
import re
import threading

import pytest
import websocket

from falweb import backend
from tests.conftest import TEST_FAL_KEY


def connect(live_server, endpoint_id="fal-ai/fast-lcm-diffusion"):
    url = live_server.url.replace("http://", "ws://") + f"/live/{endpoint_id}/ws"
    return websocket.create_connection(url, timeout=15)


def messages_until(ws, kind):
    seen = []
    while True:
        message = json.loads(ws.recv())
        seen.append(message)
        if message["type"] == kind:
            return seen


def test_json_in_result_out_with_data_uri_images(live_server):
    ws = connect(live_server)
    try:
        ws.send(json.dumps({"prompt": "a lighthouse", "image_size": "square",
                            "num_inference_steps": 2, "seed": 9}))
        seen = messages_until(ws, "result")
        result = seen[-1]["result"]
        assert result["seed"] == 9 and result["prompt"] == "a lighthouse"
        assert result["images"][0]["url"].startswith("data:image/")
        assert json.loads(ws.recv())["type"] == "timings"
    finally:
        ws.close()


def test_invalid_input_answers_field_errors_and_is_not_sent(live_server):
    ws = connect(live_server)
    try:
        ws.send(json.dumps({"prompt": "x", "num_images": "lots"}))
        message = json.loads(ws.recv())
        assert message["type"] == "invalid" and "num_images" in message["errors"]
        ws.send("not json")
        assert json.loads(ws.recv())["type"] == "invalid"
    finally:
        ws.close()


def test_only_the_latest_input_is_kept_while_busy(app, live_server):
    backend.embedded_runtime(app).engine.step_delay = 0.1
    ws = connect(live_server)
    try:
        for n in range(6):  # six quick edits while the first still runs (0.1 s × 4 steps)
            ws.send(json.dumps({"prompt": f"edit {n}", "image_size": "square",
                                "num_inference_steps": 4}))
        prompts = []
        while len(prompts) < 2:
            message = json.loads(ws.recv())
            if message["type"] == "result":
                prompts.append(message["result"]["prompt"])
        assert prompts == ["edit 0", "edit 5"]  # the stale middle edits were dropped
    finally:
        ws.close()


def test_endpoints_without_realtime_are_refused(live_server, client):
    ws = connect(live_server, "fal-ai/flux/dev")
    try:
        assert json.loads(ws.recv())["error"] == "NOT_FOUND"
    finally:
        ws.close()
    assert client.get("/live/fal-ai/flux/dev").status_code == 404
    page = client.get("/live/fal-ai/fast-lcm-diffusion")
    assert page.status_code == 200 and b"live-form" in page.data
    assert b"ynthetic" in page.data


@pytest.mark.parametrize("endpoint_id", ["fal-ai/fast-lcm-diffusion"])
def test_the_page_never_carries_the_key(tmp_path, monkeypatch, endpoint_id):
    from falweb import create_app

    monkeypatch.setenv("FAL_KEY", TEST_FAL_KEY)
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path), "TESTING": True,
                      "FALWEB_HISTORY_RECONCILE": False})
    page = app.test_client().get(f"/live/{endpoint_id}")
    assert page.status_code == 200
    assert TEST_FAL_KEY.encode() not in page.data
    assert TEST_FAL_KEY.split(":")[1].encode() not in page.data


def test_big_integers_reach_the_browser_as_strings():
    from falweb.live import browser_json

    message = {"type": "result", "result": {
        "seed": 1123118605902879207, "images": [{"width": 512, "height": 512}],
        "edge": [2**53 - 1, -(2**53 - 1), 2**53, -(2**53)], "nsfw": [True, False], "t": 0.25}}
    sent = json.loads(browser_json(message))
    # A JS double would turn the seed into 1123118605902879200; a string keeps its digits.
    assert sent["result"]["seed"] == "1123118605902879207"
    assert sent["result"]["images"] == [{"width": 512, "height": 512}]
    assert sent["result"]["edge"] == [2**53 - 1, -(2**53 - 1), "9007199254740992",
                                      "-9007199254740992"]
    assert sent["result"]["nsfw"] == [True, False] and sent["result"]["t"] == 0.25


def test_a_big_seed_comes_back_with_every_digit(live_server):
    ws = connect(live_server)
    try:
        # The browser splices the typed digits into its JSON: Python reads them exactly.
        ws.send('{"prompt": "a lantern", "image_size": "square", "num_inference_steps": 1,'
                ' "seed": 1123118605902879207}')
        result = messages_until(ws, "result")[-1]["result"]
        assert result["seed"] == "1123118605902879207"
    finally:
        ws.close()


def test_the_page_asks_for_a_prompt_and_needs_javascript(client):
    page = client.get("/live/fal-ai/fast-lcm-diffusion").text
    prompt = re.search(r'<textarea id="live-prompt"[^>]*>(.*?)</textarea>', page, re.S)
    assert prompt[1] == "" and "placeholder=" in prompt[0]  # empty, with a hint
    assert "<noscript>" in page and "needs JavaScript" in page
    # The status and the image appear only when live.js runs.
    for element_id in ("live-status", "live-figure"):
        assert re.search(rf'<[a-z]+ id="{element_id}"[^>]* hidden>', page), element_id


def test_a_live_session_on_the_embedded_runtime_holds_no_second_socket(live_server):
    ws = connect(live_server)
    try:
        ws.send(json.dumps({"prompt": "in process", "num_inference_steps": 1}))
        messages_until(ws, "result")
        # The runtime's own realtime route runs a reader thread per socket: none here.
        names = [thread.name for thread in threading.enumerate()]
        assert "realtime-reader" not in names
    finally:
        ws.close()


def test_sessions_past_the_limit_are_told_busy(app, live_server):
    app.extensions["falweb_live"]["sessions"] = threading.BoundedSemaphore(1)
    first = connect(live_server)
    try:
        first.send(json.dumps({"prompt": "one", "num_inference_steps": 1}))
        messages_until(first, "result")
        second = connect(live_server)
        try:
            assert json.loads(second.recv())["error"] == "BUSY"
        finally:
            second.close()
    finally:
        first.close()


def test_an_idle_session_is_closed(app, live_server):
    app.config["FALWEB_LIVE_IDLE_SECONDS"] = 0.5
    ws = connect(live_server)
    try:
        message = json.loads(ws.recv())
        assert message["type"] == "error" and message["error"] == "TIMEOUT"
    finally:
        ws.close()
