"""The local runtime's realtime socket, frame by frame (fal-protocol §8)."""

import json

import msgpack
import requests
import websocket


def ws_url(base, endpoint_id, token=None):
    url = base.replace("http://", "ws://") + f"/run/{endpoint_id}/realtime"
    return url + (f"?fal_jwt_token={token}" if token else "")


def token(base, alias):
    return requests.post(base + "/rest/tokens/",
                         json={"allowed_apps": [alias], "token_expiration": 120}, timeout=10).json()


def receive(ws):
    opcode, data = ws.recv_data()
    if opcode == websocket.ABNF.OPCODE_BINARY:
        return "binary", msgpack.unpackb(data, raw=False)
    return "text", json.loads(data)


def test_msgpack_in_msgpack_out_then_timings(local_runtime):
    ws = websocket.create_connection(
        ws_url(local_runtime.url, "fal-ai/fast-lcm-diffusion",
               token(local_runtime.url, "fast-lcm-diffusion")), timeout=10)
    try:
        ws.send_binary(msgpack.packb({"prompt": "a cat", "image_size": "square",
                                      "num_inference_steps": 2, "seed": 5}))
        kind, output = receive(ws)
        assert kind == "binary"
        assert output["seed"] == 5 and output["images"][0]["url"].startswith("data:image/jpeg")
        kind, meta = receive(ws)
        assert kind == "text" and meta["type"] == "x-fal-message" and meta["timing"] >= 0
        # JSON text inputs are accepted too
        ws.send(json.dumps({"prompt": "a dog", "image_size": "square", "num_inference_steps": 1}))
        kind, output = receive(ws)
        assert kind == "binary" and output["prompt"] == "a dog"
    finally:
        ws.close()


def test_invalid_input_is_an_x_fal_error_and_the_session_goes_on(local_runtime):
    ws = websocket.create_connection(ws_url(local_runtime.url, "fal-ai/fast-lcm-diffusion"),
                                     timeout=10)
    try:
        ws.send_binary(msgpack.packb({"prompt": "x", "num_images": "lots"}))
        kind, error = receive(ws)
        assert kind == "text" and error["type"] == "x-fal-error"
        assert error["error"] == "VALIDATION_ERROR" and "num_images" in error["reason"]
        ws.send_binary(msgpack.packb({"prompt": "fine", "image_size": "square",
                                      "num_inference_steps": 1}))
        assert receive(ws)[0] == "binary"
    finally:
        ws.close()


def test_bad_token_is_unauthorized(local_runtime):
    ws = websocket.create_connection(
        ws_url(local_runtime.url, "fal-ai/fast-lcm-diffusion", token(local_runtime.url, "other")),
        timeout=10)
    try:
        assert receive(ws) == ("text", {"status": "error", "error": "Unauthorized"})
    finally:
        ws.close()


def test_endpoint_without_realtime_is_refused(local_runtime):
    ws = websocket.create_connection(ws_url(local_runtime.url, "fal-ai/flux/dev"), timeout=10)
    try:
        kind, error = receive(ws)
        assert error["type"] == "x-fal-error" and error["error"] == "NOT_FOUND"
    finally:
        ws.close()
