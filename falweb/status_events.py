"""A request's status pushed to its page as server-sent events (htmx's SSE extension).

The request page's status section polls ``GET /requests/<id>/status`` every second. With
JavaScript it also opens ``GET /requests/<id>/status/events``, which follows the backend's own
status stream (fal's ``/status/stream``) instead of asking the backend every second, stores
each update through the polls' own path (:func:`falweb.history_sync.apply_status`), and sends
the rendered status partial as a ``status`` event each time what the page shows changes.

``static/js/app.js`` holds the polls back while that stream is open, so the polls take over
whenever it is not: refused (204: push is off, or this process has
``FALWEB_STATUS_STREAMS_MAX`` open already), ended after ``FALWEB_STATUS_STREAM_MAX_SECONDS``
(the browser reconnects), or broken (a last fragment says why). Once the request is over the
last fragment carries the results and a ``close`` event tells the page to stop listening.

Each open stream holds a server thread while it lasts, hence the cap per process, as for
live sessions.
"""

import re
import threading
import time

from flask import Response
from flask import current_app
from flask import render_template
from flask import stream_with_context
from flask_wtf.csrf import generate_csrf

from falweb import history
from falweb import history_sync
from falweb.client import errors as client_errors
from falweb.client.status import QueueStatus
from falweb.presentation import describe_error
from falweb.presentation import status_context

# The event whose data replaces the page's status section (its sse-swap).
STATUS_EVENT = "status"
# The event after which the page closes its EventSource for good (its sse-close).
CLOSE_EVENT = "close"
# Seconds without a word after which a comment goes out, so that proxies keep an idle stream
# open and a page that went away is noticed. It goes out when the backend's stream says
# anything (the local runtime's keep-alive: every 10 s).
KEEPALIVE_SECONDS = 15.0
ENDED_EARLY = {"status": None,
               "detail": "The backend's status stream ended before the request did."}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def init_app(app):
    """Count this process's open status streams (``FALWEB_STATUS_STREAMS_MAX``)."""
    app.extensions["falweb_status_events"] = {"streams": threading.BoundedSemaphore(
        max(0, int(app.config["FALWEB_STATUS_STREAMS_MAX"])))}


def enabled(app=None):
    """Whether request pages push their status at all (``FALWEB_STATUS_STREAMS_MAX`` > 0)."""
    return int((app or current_app).config["FALWEB_STATUS_STREAMS_MAX"]) > 0


def response(row, client):
    """The ``text/event-stream`` answer that follows ``row``'s request with ``client``; 204
    (which the browser's EventSource does not retry) when push is off or this process has
    as many streams open as it may."""
    streams = current_app.extensions["falweb_status_events"]["streams"]
    if not streams.acquire(blocking=False):
        return Response(status=204)
    try:
        # The partial's cancel form carries the session's CSRF token: made now, while the
        # session can still go out with the headers.
        generate_csrf()
        deadline = time.monotonic() + float(
            current_app.config["FALWEB_STATUS_STREAM_MAX_SECONDS"])
        answer = Response(stream_with_context(_events(row, client, deadline)),
                          mimetype="text/event-stream",
                          headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    except BaseException:
        streams.release()
        raise
    # Called by the server when the stream ends for any reason, the page's leaving included.
    answer.call_on_close(streams.release)
    return answer


def _events(row, client, deadline):
    # The headers go out with the first bytes: the page's EventSource opens at once.
    yield ": following the request's status\n\n"
    if row["status"] in history.TERMINAL:
        yield from _final(row)
        return
    try:
        stream = client.queue.stream_status(row["endpoint_id"], row["request_id"], logs=True)
    except client_errors.FalError as exc:
        error = describe_error(exc)
        if getattr(exc, "status", None) == 404:
            # The backend forgot the request: the polls' path ends the row, as a poll would.
            try:
                row = history_sync.refresh(client, row)
            except client_errors.FalError as again:
                error = describe_error(again)
        yield from _give_up(row, error)
        return
    with stream:
        shown = _shown(row)
        logs = []  # the stream sends each log line once; the row keeps them all
        last_word = time.monotonic()
        try:
            for event in stream.with_pauses():
                if isinstance(event, dict):
                    logs.extend(event.get("logs") or [])
                    # The history's copy, not this stream's: a cancel asked on the page, or a
                    # webhook that finished the row, changed it meanwhile.
                    row = history.get(row["request_id"]) or row
                    if row["status"] not in history.TERMINAL:
                        row = history_sync.apply_status(client, row, QueueStatus(event, logs))
                    if row["status"] in history.TERMINAL:
                        yield from _final(row)
                        return
                    if _shown(row) != shown:
                        shown = _shown(row)
                        last_word = time.monotonic()
                        yield _fragment(row)
                now = time.monotonic()
                if now >= deadline:
                    return  # the page polls until its EventSource reconnects
                if now - last_word >= KEEPALIVE_SECONDS:
                    last_word = now
                    yield ": keep-alive\n\n"
        except client_errors.FalError as exc:
            yield from _give_up(row, describe_error(exc))
            return
    yield from _give_up(row, ENDED_EARLY)


def _shown(row):
    """What the page shows of a running request, apart from the clock."""
    return row["status"], row["queue_position"], len(row["logs"]), row["cancel_requested"]


def _fragment(row, poll_error=None):
    html = render_template("partials/_status.html", **status_context(row, poll_error))
    data = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(html))
    return f"event: {STATUS_EVENT}\n{data}\n"


def _final(row):
    yield _fragment(row)
    yield f"event: {CLOSE_EVENT}\ndata: {row['status']}\n\n"


def _give_up(row, poll_error):
    """The last words of a stream that cannot follow the request any more: the error, after
    which the page polls; or the end, when a poll or a webhook brought it meanwhile."""
    row = history.get(row["request_id"]) or row
    if row["status"] in history.TERMINAL:
        yield from _final(row)
        return
    yield _fragment(row, poll_error)
    yield f"event: {CLOSE_EVENT}\ndata: polling\n\n"
