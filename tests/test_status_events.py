"""The request page's status pushed as server-sent events (falweb/status_events.py).

The whole app on a real loopback port with a slow preview engine; the event stream is read
over HTTP as a browser's EventSource reads it.
"""

import re

import pytest
import requests

from falweb import history
from falweb.testing import serve_app
from falweb.testing import wait_until

REQUEST_PATH = re.compile(r"^/requests/(?P<request_id>[^/]+)$")
DATA_STATUS = re.compile(r'data-status="(?P<status>[A-Z_]+)"')


def config(tmp_path, **settings):
    return {
        "TESTING": True,
        "FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
        "FALWEB_BACKEND": "local",
        "FALWEB_LOCAL_STEP_DELAY": 0.1,
        "FALWEB_LOCAL_WORKERS": 1,
        "WTF_CSRF_ENABLED": False,
        **settings,
    }


@pytest.fixture
def server(tmp_path):
    with serve_app(config(tmp_path)) as server:
        yield server


def submit(server, steps=8, headers=None):
    answer = requests.post(server.url + "/models/fal-ai/fast-sdxl", timeout=30,
                           allow_redirects=False, headers=headers or {},
                           data={"prompt": "a lighthouse at dusk",
                                 "num_inference_steps": str(steps)})
    assert answer.status_code == 303, answer.text
    return REQUEST_PATH.match(answer.headers["Location"])["request_id"]


def open_events(server, request_id, headers=None):
    return requests.get(f"{server.url}/requests/{request_id}/status/events", stream=True,
                        timeout=30, headers={"Accept": "text/event-stream", **(headers or {})})


def read_events(answer):
    """Every ``(event name, data)`` until the server ends the stream; comments are dropped,
    as EventSource drops them."""
    events, name, data = [], "message", []
    for line in answer.iter_lines(decode_unicode=True):
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    return events


def shown_status(fragment):
    return DATA_STATUS.search(fragment)["status"]


def row_of(server, request_id):
    with server.app.app_context():
        return history.get(request_id)


def test_the_stream_follows_a_request_to_its_results_and_ends(server):
    request_id = submit(server)
    answer = open_events(server, request_id)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Accel-Buffering"] == "no"

    events = read_events(answer)  # returns once the server has ended the stream
    names = [name for name, _ in events]
    assert names[-1] == "close" and names.count("close") == 1
    fragments = [data for name, data in events if name == "status"]
    statuses = [shown_status(fragment) for fragment in fragments]
    assert statuses[-1] == "COMPLETED"
    assert set(statuses[:-1]) <= {"IN_QUEUE", "IN_PROGRESS"} and statuses[:-1], statuses
    # Each fragment is the whole status section, as the polls' partial is.
    assert all(f'id="status-{request_id}"' in fragment
               for fragment in fragments)
    # Pushed while it ran: log lines and steps as they came.
    assert any("step" in fragment for fragment in fragments[:-1])
    last = fragments[-1]
    assert '<img src="/local/cdn/' in last
    assert 'id="result-seed"' in last
    assert "hx-trigger" not in last and "sse-swap" not in last

    row = row_of(server, request_id)
    assert row["status"] == "COMPLETED"
    assert row["result"]["images"]
    assert row["logs"]


def test_a_request_already_over_gets_its_final_fragment_and_the_end(server):
    request_id = submit(server, steps=2)
    wait_until(lambda: requests.get(f"{server.url}/requests/{request_id}/status", timeout=30,
                                    headers={"HX-Request": "true"}).status_code == 286,
               timeout=30, message="the request to finish by polling")
    events = read_events(open_events(server, request_id))
    assert [name for name, _ in events] == ["status", "close"]
    assert shown_status(events[0][1]) == "COMPLETED"
    assert '<img src="/local/cdn/' in events[0][1]


def test_the_request_page_opens_the_stream_only_while_the_request_runs(server):
    request_id = submit(server, steps=20)
    page = requests.get(f"{server.url}/requests/{request_id}", timeout=30).text
    assert f'sse-connect="/requests/{request_id}/status/events"' in page
    assert "htmx-ext-sse-2.2.4.js" in page
    assert 'hx-trigger="every 1s"' in page  # the polls stay, as the fallback
    read_events(open_events(server, request_id))  # to the end of the request
    page = requests.get(f"{server.url}/requests/{request_id}", timeout=30).text
    assert "sse-connect" not in page and "htmx-ext-sse" not in page


def test_a_quiet_stream_keeps_the_connection_alive(server, monkeypatch):
    from falweb import status_events
    from falweb.local import queue_api

    # Keep-alives every few hundredths of a second, from the runtime and from the app.
    monkeypatch.setattr(queue_api, "KEEPALIVE", 0.05)
    monkeypatch.setattr(status_events, "KEEPALIVE_SECONDS", 0.05)
    submit(server, steps=50)  # takes the runtime's only worker for a while
    waiting = submit(server, steps=2)  # queued behind it, with nothing new to say
    with open_events(server, waiting) as answer:
        lines = answer.iter_lines(decode_unicode=True)
        assert next(line for line in lines if line.startswith(": keep-alive"))


def test_another_users_request_is_not_found(tmp_path):
    settings = config(tmp_path, FALWEB_AUTH="header", FALWEB_TRUSTED_PROXIES="127.0.0.1/32")
    alice, bob = {"X-Forwarded-User": "alice"}, {"X-Forwarded-User": "bob"}
    with serve_app(settings) as server:
        request_id = submit(server, steps=2, headers=alice)
        refused = open_events(server, request_id, headers=bob)
        assert refused.status_code == 404
        assert "text/event-stream" not in refused.headers["Content-Type"]
        assert open_events(server, "no-such-id", headers=alice).status_code == 404
        events = read_events(open_events(server, request_id, headers=alice))
        assert events[-1][0] == "close"


def test_over_the_cap_the_answer_is_204_and_the_page_polls(tmp_path):
    with serve_app(config(tmp_path, FALWEB_STATUS_STREAMS_MAX=1)) as server:
        request_id = submit(server, steps=40)
        first = open_events(server, request_id)
        assert first.status_code == 200
        second = open_events(server, request_id)
        assert second.status_code == 204
        assert second.content == b""
        # The polls still answer, and the slot comes back once the first stream is gone.
        polled = requests.get(f"{server.url}/requests/{request_id}/status", timeout=30,
                              headers={"HX-Request": "true"})
        assert polled.status_code in (200, 286)
        first.close()
        wait_until(lambda: open_events(server, request_id).status_code == 200, timeout=30,
                   message="the closed stream's slot to be free again")


def test_with_the_cap_at_0_pages_only_poll(tmp_path):
    with serve_app(config(tmp_path, FALWEB_STATUS_STREAMS_MAX=0)) as server:
        request_id = submit(server, steps=20)
        page = requests.get(f"{server.url}/requests/{request_id}", timeout=30).text
        assert "sse-connect" not in page and "htmx-ext-sse" not in page
        assert 'hx-trigger="every 1s"' in page
        assert open_events(server, request_id).status_code == 204


def test_a_stream_past_its_lifetime_ends_without_closing_the_page(tmp_path):
    with serve_app(config(tmp_path, FALWEB_STATUS_STREAM_MAX_SECONDS=0.5)) as server:
        request_id = submit(server, steps=50)
        events = read_events(open_events(server, request_id))
        # No "close": the page's EventSource reconnects (and polls meanwhile).
        assert "close" not in [name for name, _ in events]
        assert row_of(server, request_id)["status"] in history.PENDING


# -- a backend whose status stream breaks --------------------------------------------------------


def breaking_backend(environ, start_response):
    """A stand-in for fal's queue, on a real socket, for what the local runtime never does:
    the status stream of request ``broken`` fails with a 500, that of ``dropped`` ends after
    one IN_PROGRESS event, and ``forgotten`` is not known at all (404)."""
    path = environ["PATH_INFO"]
    if "/requests/forgotten" in path:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"detail": "Request not found"}']
    if path.endswith("/requests/broken/status/stream"):
        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
        return [b'{"detail": "the queue fell over"}']
    if path.endswith("/requests/dropped/status/stream"):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return [b'data: {"status": "IN_PROGRESS", "request_id": "dropped", "logs": '
                b'[{"message": "Step 1/4", "level": "INFO", "timestamp": '
                b'"2026-01-01T00:00:00Z"}]}\n\n']
    start_response("404 Not Found", [("Content-Type", "application/json")])
    return [b'{"detail": "not here"}']


@pytest.fixture
def breaking_server(tmp_path):
    from falweb.serving import ServerThread

    fake = ServerThread(breaking_backend)
    # No reconcile: its polls of the rows below would race the streams under test.
    settings = config(tmp_path, FALWEB_LOCAL_URL=fake.url, FALWEB_HISTORY_RECONCILE=False)
    try:
        with serve_app(settings) as server:
            with server.app.app_context():
                for request_id in ("broken", "dropped", "forgotten"):
                    history.add(request_id, "fal-ai/fast-sdxl", {"prompt": "x"},
                                backend="local", status="IN_QUEUE", owner="local")
            yield server
    finally:
        fake.shutdown()


@pytest.mark.parametrize(("request_id", "said"), [
    ("broken", "the queue fell over"),
    ("dropped", "ended before the request did"),
])
def test_a_broken_backend_stream_leaves_the_page_polling(breaking_server, request_id, said):
    events = read_events(open_events(breaking_server, request_id))
    # One fragment that says why, then "close": the page's polls take over.
    assert [name for name, _ in events][-2:] == ["status", "close"]
    last = events[-2][1]
    assert "Could not check the status just now" in last and said in last
    assert 'hx-trigger="every 1s"' in last
    assert row_of(breaking_server, request_id)["status"] in history.PENDING


def test_a_request_the_backend_forgot_ends_as_a_poll_ends_it(breaking_server):
    events = read_events(open_events(breaking_server, "forgotten"))
    assert [name for name, _ in events] == ["status", "close"]
    assert shown_status(events[0][1]) == "FAILED"
    assert row_of(breaking_server, "forgotten")["status"] == "FAILED"
