"""Hostile bodies get a fal-shaped 4xx from every JSON route of the runtime, never a 500 and
never a traceback in the log: JSON nested far too deep, text that is not Unicode (a lone
surrogate escape), chunked bodies that are not valid chunked encoding."""

import json
import logging
import socket
from urllib.parse import urlsplit

import msgpack
import pytest
import requests
import websocket

JSON = {"Content-Type": "application/json"}
# Every route that reads a JSON body (the cdn "complete" route with an unknown upload: the
# body is read first).
JSON_ROUTES = ["/queue/fal-ai/fast-sdxl", "/run/fal-ai/fast-sdxl",
               "/run/fal-ai/fast-sdxl/stream", "/queue/fal-ai/fast-sdxl/image-to-image",
               "/rest/storage/upload/initiate", "/rest/storage/upload/initiate-multipart",
               "/rest/tokens/", "/cdn/uploads/unknown/complete"]


def tracebacks(caplog):
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR or r.exc_info]


def assert_fal_4xx(answer, *codes):
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    if codes:
        assert answer.status_code in codes, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == "application/json"
    assert "detail" in answer.json()


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("depth", [100_000, 500])
def test_deeply_nested_json_is_a_422(shared_runtime, caplog, route, depth):
    # 100 000 levels overflow the parser; 500 parse, and are refused as too deep to take.
    for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                 '{"prompt": ' + "[" * depth + "]" * depth + "}"):
        answer = requests.post(shared_runtime.url + route, data=body, headers=JSON, timeout=30)
        assert_fal_4xx(answer, 422)
        assert answer.json()["detail"][0]["loc"] == ["body"]
        assert "nested deeper" in answer.json()["detail"][0]["msg"]
    assert tracebacks(caplog) == []


def test_deep_json_in_a_get_query_is_not_a_500(shared_runtime, caplog):
    nested = "[" * 5_000 + "]" * 5_000  # past the parser's recursion limit, under 64 KB
    answer = requests.get(f"{shared_runtime.url}/run/fal-ai/fast-sdxl",
                          params={"prompt": nested, "num_inference_steps": "1"}, timeout=30)
    # Not JSON that can be taken, so the raw text: a prompt of brackets, which is fine.
    assert answer.status_code == 200, answer.text[:300]
    shallow_but_deep = "[" * 500 + "]" * 500
    answer = requests.get(f"{shared_runtime.url}/run/fal-ai/fast-sdxl",
                          params={"prompt": shallow_but_deep}, timeout=30)
    assert_fal_4xx(answer, 422)
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("route", ["queue", "run"])
def test_a_lone_surrogate_in_the_prompt_is_a_422_naming_it(shared_runtime, caplog, route):
    body = '{"prompt": "a cat \\ud800", "num_inference_steps": 1, "image_size": "square"}'
    answer = requests.post(f"{shared_runtime.url}/{route}/fal-ai/fast-sdxl", data=body,
                           headers=JSON, timeout=30)
    assert_fal_4xx(answer, 422)
    detail = answer.json()["detail"]
    assert detail[0]["loc"] == ["body", "prompt"] and "Unicode" in detail[0]["msg"]
    # deeper in, and in a GET's query
    body = ('{"prompt": "x", "loras": [{"path": "https://example.com/\\udfff",'
            ' "scale": 1}]}')
    answer = requests.post(f"{shared_runtime.url}/{route}/fal-ai/lora", data=body,
                           headers=JSON, timeout=30)
    assert_fal_4xx(answer, 422)
    assert answer.json()["detail"][0]["loc"] == ["body", "loras", 0, "path"]
    answer = requests.get(f"{shared_runtime.url}/run/fal-ai/fast-sdxl",
                          params={"prompt": '"\\ud800"'}, timeout=30)
    assert_fal_4xx(answer, 422)
    assert answer.json()["detail"][0]["loc"] == ["body", "prompt"]
    assert shared_runtime.runtime.queue.counts()["IN_QUEUE"] == 0
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("route,body", [
    ("/rest/storage/upload/initiate", '{"content_type": "image/\\ud800"}'),
    ("/rest/tokens/", '{"allowed_apps": ["fast-sdxl\\udc00"]}'),
    ("/queue/fal-ai/fast-sdxl", '{"prompt": "x", "\\ud800": 1}'),
])
def test_lone_surrogates_anywhere_are_a_422(shared_runtime, caplog, route, body):
    answer = requests.post(shared_runtime.url + route, data=body, headers=JSON, timeout=30)
    assert_fal_4xx(answer, 422)
    assert "Unicode" in answer.json()["detail"][0]["msg"]
    assert tracebacks(caplog) == []


def test_realtime_frames_too_deep_or_not_unicode_are_errors_and_the_session_goes_on(
        shared_runtime, caplog):
    url = shared_runtime.url.replace("http://", "ws://") + "/run/fal-ai/fast-lcm-diffusion/realtime"
    ws = websocket.create_connection(url, timeout=10)
    try:
        for frame in ("[" * 100_000 + "]" * 100_000, '{"prompt": ' + "[" * 500 + "]" * 500 + "}",
                      '{"prompt": "\\ud800"}'):
            ws.send(frame)
            error = json.loads(ws.recv())
            assert error["type"] == "x-fal-error"
            assert error["error"] in ("INVALID_INPUT", "VALIDATION_ERROR"), error
        # msgpack maps may have keys JSON cannot: bytes, numbers
        for frame in ({b"\xff": "x", "prompt": "x"}, {1: "x"}, {"prompt": {b"k": [1]}}):
            ws.send_binary(msgpack.packb(frame, use_bin_type=True))
            error = json.loads(ws.recv())
            assert error["type"] == "x-fal-error", error
        ws.send_binary(msgpack.packb({"prompt": "fine", "image_size": "square",
                                      "num_inference_steps": 1}))
        opcode, _ = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
    finally:
        ws.close()
    assert tracebacks(caplog) == []


def raw_request(base, head, body):
    """Send ``head`` and ``body`` as they are; the status code of the answer (None if the
    server closed without one)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(head.encode() + body)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    if not answer:
        return None
    return int(answer.split(b" ", 2)[1])


MALFORMED_CHUNKED = [
    b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is not hex
    b"-5\r\n{}\r\n0\r\n\r\n",  # a negative one
    b"2\r\n{}XX0\r\n\r\n",  # no CRLF after the chunk
    b"10\r\n{\"pro",  # cut off mid-chunk
]


@pytest.mark.parametrize("body", MALFORMED_CHUNKED)
@pytest.mark.parametrize("route", ["/queue/fal-ai/fast-sdxl", "/rest/tokens/",
                                   "/rest/storage/upload/initiate", "upload"])
def test_malformed_chunked_bodies_are_a_400_without_a_traceback(shared_runtime, caplog, body,
                                                                route):
    method = "POST"
    if route == "upload":
        urls = requests.post(f"{shared_runtime.url}/rest/storage/upload/initiate",
                             json={"content_type": "image/png"}, timeout=10).json()
        method, route = "PUT", urlsplit(urls["upload_url"]).path
    head = (f"{method} {route} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n")
    status = raw_request(shared_runtime.url, head, body)
    assert status is None or 400 <= status < 500, status
    assert tracebacks(caplog) == []
    # the runtime is fine afterwards
    assert requests.get(f"{shared_runtime.url}/healthz", timeout=10).status_code == 200
