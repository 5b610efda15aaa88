"""Server-sent events: ``stream()`` results and the queue's status stream (fal-protocol §7.4).

:class:`SSEDecoder` turns byte chunks into events without any I/O, for both clients. A
:class:`FalStream` is an iterator of the events' parsed JSON ``data``; ``done()`` reads to
the end and returns the last event (fal sends the final output last). Bytes are split into
lines only after whole lines arrived, so a UTF-8 character cut between network chunks is
never corrupted.
"""

import json
import re
import time

import requests

from falweb.client.errors import ApiError
from falweb.client.errors import FalConnectionError
from falweb.client.errors import FalTimeoutError

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_READ_SIZE = 64 * 1024


class SSEDecoder:
    """Feed it byte chunks; it returns the ``data`` of each complete event (the WHATWG
    event-stream rules: comments, ``retry:``, ``id:`` and ``event:`` names are ignored, an
    event without ``data`` is not dispatched, several ``data`` lines join with ``\\n``)."""

    def __init__(self):
        self._buffer = b""
        self._skip_lf = False
        self._data = []

    def feed(self, chunk):
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        self._buffer += chunk
        lines = _LINE_BREAK.split(self._buffer)
        self._buffer = lines.pop()
        if lines and chunk.endswith(b"\r") and not self._buffer:
            self._skip_lf = True  # the "\n" of a "\r\n" may open the next chunk
        return [data for data in map(self._line, lines) if data is not None]

    def close(self):
        """The last event, when the stream ended without its blank line."""
        events = [] if not self._buffer else [self._line(self._buffer)]
        events.append(self._line(b""))
        self._buffer = b""
        return [data for data in events if data is not None]

    def _line(self, raw_line):
        line = raw_line.decode("utf-8", errors="replace")
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None


def parse_event(data, status, request_id):
    """An event's JSON; :class:`ApiError` when it is not JSON (fal's client fails too)."""
    try:
        return json.loads(data)
    except ValueError:
        raise ApiError(f"Invalid JSON in event stream: {data[:200]!r}", status, None,
                       request_id) from None


def _chunks(response):
    # read1 returns what has arrived instead of waiting for a full buffer; SSE needs that.
    raw = response.raw
    if hasattr(raw, "read1"):
        while True:
            chunk = raw.read1(_READ_SIZE)
            if not chunk:
                return
            yield chunk
    else:  # pragma: no cover - every requests transport has read1 with urllib3 2
        yield from response.iter_content(chunk_size=1)


class StreamBase:
    """What both clients' streams know of their response: ``request_id`` (its
    ``x-fal-request-id``), ``deadline``, and whether it is SSE."""

    def __init__(self, response, *, deadline=None):
        self.response = response
        self.request_id = response.headers.get("x-fal-request-id") or None
        self.deadline = deadline
        self.is_sse = response.headers.get("Content-Type", "").startswith("text/event-stream")
        self._events = self._generate()
        self._last = None

    def _past_deadline(self):
        return self.deadline is not None and time.monotonic() >= self.deadline


class FalStream(StreamBase):
    """An open event stream. Iterate it for events; ``done()`` returns the last one.

    ``request_id`` is the response's ``x-fal-request-id``. Events are the parsed JSON of
    each SSE ``data`` (raw byte chunks when the answer is not ``text/event-stream``). Use it
    as a context manager, or call ``close()``, to release the connection early. Iterating
    raises :class:`ApiError` for an event that is not JSON, :class:`FalTimeoutError` past
    ``deadline`` (a ``time.monotonic()`` value), :class:`FalConnectionError` if the
    connection breaks.
    """

    _pauses = False

    def _check_deadline(self):
        if self._past_deadline():
            self.close()
            raise FalTimeoutError("the event stream passed its deadline")

    def _data(self):
        decoder = SSEDecoder()
        for chunk in _chunks(self.response):
            self._check_deadline()
            events = decoder.feed(chunk)
            if not events and self._pauses:
                yield None
            yield from events
        yield from decoder.close()

    def _generate(self):
        try:
            if not self.is_sse:
                yield from _chunks(self.response)
                return
            for data in self._data():
                yield None if data is None else parse_event(data, self.response.status_code,
                                                            self.request_id)
        except requests.exceptions.RequestException as exc:
            self._check_deadline()
            if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
                raise FalConnectionError(f"the event stream broke: {type(exc).__name__}") from None
            raise
        except Exception as exc:  # urllib3 errors surface unwrapped from raw reads
            if type(exc).__module__.startswith("urllib3"):
                self._check_deadline()
                raise FalConnectionError(
                    f"the event stream broke: {type(exc).__name__}") from None
            raise
        finally:
            self.response.close()

    def __iter__(self):
        return self

    def __next__(self):
        event = next(self._events)
        if event is not None:
            self._last = event
        return event

    def with_pauses(self):
        """This stream, iterating ``None`` too wherever bytes arrived that completed no
        event (a keep-alive comment): a reader that must act while the stream is quiet
        (send keep-alives of its own, keep a deadline) gets control back each time the
        server sends anything. Call it before iterating."""
        self._pauses = True
        return self

    def done(self):
        """Read the stream to its end and return the last event (None if there was none)."""
        for _ in self:
            pass
        return self._last

    def close(self):
        """Stop reading and release the connection."""
        self.response.close()

    abort = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
