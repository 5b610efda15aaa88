"""Small helpers for tests that talk to the local runtime over HTTP."""

import json

import requests

from falweb.testing import wait_until

SEED_PROMPT = (
    "A hyperdetailed photograph of a Cat dressed as a mafia boss holding a fish walking down a "
    "Japanese fish market with an angry face, 8k resolution, best quality, beautiful "
    "photograph, dynamic lighting,"
)


def wait_status(status_url, want="COMPLETED", timeout=30, logs=True):
    """Poll until the status is ``want``; returns the last status body."""
    last = [None]

    def reached():
        body = last[0] = requests.get(status_url, params={"logs": int(logs)}, timeout=10).json()
        return body if body["status"] == want else None

    return wait_until(reached, timeout=timeout,
                      message=lambda: f"{want}, still {last[0]['status']} at {status_url}")


def sse_events(response):
    """The JSON ``data:`` payloads of an SSE response, in order."""
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            events.append(json.loads(line[len("data:"):].strip()))
    return events
