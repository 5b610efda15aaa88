"""Small helpers for tests that talk to the local runtime over HTTP."""

import json
import time

import requests

SEED_PROMPT = (
    "A hyperdetailed photograph of a Cat dressed as a mafia boss holding a fish walking down a "
    "Japanese fish market with an angry face, 8k resolution, best quality, beautiful "
    "photograph, dynamic lighting,"
)


def wait_status(status_url, want="COMPLETED", timeout=30, logs=True):
    """Poll until the status is ``want``; returns the last status body."""
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(status_url, params={"logs": int(logs)}, timeout=10).json()
        if body["status"] == want:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"still {body['status']} after {timeout}s")
        time.sleep(0.02)


def sse_events(response):
    """The JSON ``data:`` payloads of an SSE response, in order."""
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            events.append(json.loads(line[len("data:"):].strip()))
    return events
