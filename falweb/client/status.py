"""What the queue answers: status updates, submitted-request handles and results."""

import re

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"

# "Step 12/28", "12/28 [00:03<00:05]": the step counters diffusion runners log (the local
# runtime, tqdm). Not part of a larger number or a decimal ("1.5/2", "2024/11/27" is no step).
_STEP = re.compile(r"(?<![\d./])(?P<step>\d{1,5})\s*/\s*(?P<total>\d{1,5})(?![\d./])")


def step_of(logs, recent=20):
    """``(step, total)`` from the newest of the last ``recent`` log lines that counts steps,
    or None. ``logs``: fal's log dicts (``{"message": ...}``) or plain strings."""
    for line in reversed(list(logs or [])[-recent:]):
        message = line.get("message") if isinstance(line, dict) else line
        match = _STEP.search(message) if isinstance(message, str) else None
        if match and 0 < int(match["step"]) <= int(match["total"]):
            return int(match["step"]), int(match["total"])
    return None


class QueueStatus:
    """One status of a queued request (fal-protocol §4.2), as ``on_queue_update`` receives it.

    ``status`` is ``"IN_QUEUE"``, ``"IN_PROGRESS"`` or ``"COMPLETED"``; ``queue_position`` is
    set while queued (0 = next); ``logs`` is the list of ``{"message", "level", "source",
    "timestamp"}`` dicts so far (``[]`` when logs were not asked for); ``metrics``, ``error``
    and ``error_type`` come with ``COMPLETED``; ``raw`` is the JSON object as received, and
    ``status["key"]`` reads it too.
    """

    __slots__ = ("raw", "logs")

    def __init__(self, raw, logs=None):
        self.raw = dict(raw) if isinstance(raw, dict) else {"status": str(raw)}
        self.logs = list(logs if logs is not None else (self.raw.get("logs") or []))

    status = property(lambda self: self.raw.get("status"))
    request_id = property(lambda self: self.raw.get("request_id"))
    queue_position = property(lambda self: self.raw.get("queue_position"))
    metrics = property(lambda self: self.raw.get("metrics") or {})
    error = property(lambda self: self.raw.get("error"))
    error_type = property(lambda self: self.raw.get("error_type"))
    response_url = property(lambda self: self.raw.get("response_url"))
    status_url = property(lambda self: self.raw.get("status_url"))
    cancel_url = property(lambda self: self.raw.get("cancel_url"))

    @property
    def done(self):
        """True once the request will not change any more.

        fal knows only ``IN_QUEUE``, ``IN_PROGRESS`` and ``COMPLETED`` (a failure is a
        ``COMPLETED`` with ``error``); any other value is treated as final too, so a caller
        never polls forever on a status fal might add (``FAILED``, ``CANCELLED``).
        """
        return self.status not in (IN_QUEUE, IN_PROGRESS)

    def __getitem__(self, key):
        return self.logs if key == "logs" and "logs" in self.raw else self.raw[key]

    def get(self, key, default=None):
        return self.raw.get(key, default)

    def __eq__(self, other):
        return isinstance(other, QueueStatus) and (self.raw, self.logs) == (other.raw, other.logs)

    __hash__ = None

    def __repr__(self):
        extra = f", queue_position={self.queue_position}" if self.status == IN_QUEUE else \
            f", logs={len(self.logs)}"
        return f"QueueStatus(status={self.status!r}, request_id={self.request_id!r}{extra})"


class Result(dict):
    """A model's output: the output JSON object itself (``result["images"]``), plus
    ``request_id`` (from ``x-fal-request-id``, or the queue's id) and ``data`` (the output
    exactly as received, also when it is not a JSON object)."""

    def __init__(self, data, request_id=None):
        super().__init__(data if isinstance(data, dict) else {})
        self.data = data
        self.request_id = request_id

    def __repr__(self):
        return f"Result({dict.__repr__(self)}, request_id={self.request_id!r})"


class RequestHandle:
    """A submitted request: ``request_id``, the queue's URLs and ``queue_position`` from the
    submit answer (``raw``), with shortcuts to its status, result and cancel.

    ``handle["request_id"]`` also works, as in the seed's ``const { request_id } = ...``.
    """

    def __init__(self, queue, endpoint_id, raw):
        self._queue = queue
        self.endpoint_id = endpoint_id
        self.raw = dict(raw)
        self.request_id = self.raw["request_id"]

    response_url = property(lambda self: self.raw.get("response_url"))
    status_url = property(lambda self: self.raw.get("status_url"))
    cancel_url = property(lambda self: self.raw.get("cancel_url"))
    queue_position = property(lambda self: self.raw.get("queue_position"))

    def __getitem__(self, key):
        return self.raw[key]

    def status(self, *, logs=False, with_logs=None):
        """The current :class:`QueueStatus` (``with_logs`` is fal's Python name of ``logs``)."""
        return self._queue.status(self.endpoint_id, self.request_id,
                                  logs=logs if with_logs is None else with_logs)

    def stream_status(self, *, logs=False):
        """A :class:`~falweb.client.streaming.FalStream` of status updates."""
        return self._queue.stream_status(self.endpoint_id, self.request_id, logs=logs)

    def fetch_result(self):
        """The :class:`Result` with one GET (the request must be completed)."""
        return self._queue.result(self.endpoint_id, self.request_id)

    def result(self, *, timeout=None, **options):
        """Wait for completion, then return the :class:`Result` (fal's ``result``). Past
        ``timeout`` seconds :class:`~falweb.client.FalTimeoutError` is raised and the request
        keeps running (wait again, or ``cancel()``)."""
        return self._queue.wait_for_result(self.endpoint_id, self.request_id, timeout=timeout,
                                           **options)

    def get(self, *, timeout=None, interval=None, **options):
        """:meth:`result`, under fal's Python name (``interval``: seconds between polls)."""
        if interval is not None:
            options["poll_interval"] = interval
        return self.result(timeout=timeout, **options)

    def cancel(self):
        """Ask the queue to cancel it; returns the answer's ``status`` string."""
        return self._queue.cancel(self.endpoint_id, self.request_id)

    def _poll_options(self, logs, with_logs, interval):
        interval = self._queue._client.poll_interval if interval is None else float(interval)
        return (logs if with_logs is None else with_logs), interval

    def iter_events(self, *, logs=False, with_logs=None, interval=None):
        """Each :class:`QueueStatus`, polled every ``interval`` seconds (default the
        client's), ending with the first final one (fal's ``iter_events``)."""
        import time

        logs, interval = self._poll_options(logs, with_logs, interval)
        while True:
            status = self.status(logs=logs)
            yield status
            if status.done:
                return
            time.sleep(interval)

    def __repr__(self):
        return (f"{type(self).__name__}(endpoint_id={self.endpoint_id!r}, "
                f"request_id={self.request_id!r})")


class AsyncRequestHandle(RequestHandle):
    """:class:`RequestHandle` of the async client: every method returns a coroutine, and
    ``iter_events`` is an async iterator (``async for status in handle.iter_events()``)."""

    async def iter_events(self, *, logs=False, with_logs=None, interval=None):
        import asyncio

        logs, interval = self._poll_options(logs, with_logs, interval)
        while True:
            status = await self.status(logs=logs)
            yield status
            if status.done:
                return
            await asyncio.sleep(interval)
