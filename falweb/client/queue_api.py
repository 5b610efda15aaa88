"""``fal.queue``: submit, status, status stream, result, cancel (fal-protocol §4, §5)."""

import time

from falweb.client.endpoints import build_url
from falweb.client.endpoints import normalize_endpoint_id
from falweb.client.endpoints import queue_request_url
from falweb.client.errors import FalError
from falweb.client.errors import FalTimeoutError
from falweb.client.status import COMPLETED
from falweb.client.status import QueueStatus
from falweb.client.status import RequestHandle
from falweb.client.status import Result
from falweb.client.streaming import FalStream
from falweb.client.transport import error_from_response

PRIORITIES = ("normal", "low")


def _seconds(value):
    # JS sends timeout.toString(): 60 -> "60", 2.5 -> "2.5"; Python would say "60.0".
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def submit_headers(headers=None, *, priority=None, hint=None, start_timeout=None):
    """The headers of a queue submit (fal-protocol §4.1): the caller's, lower-cased, then
    ``x-fal-queue-priority`` (always; default ``normal``), ``x-fal-runner-hint`` and
    ``x-fal-request-timeout``, which override the caller's. Raises ``ValueError`` for an
    unknown priority or a start timeout of 1 second or less."""
    merged = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    priority = priority or "normal"
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
    merged["x-fal-queue-priority"] = priority
    if hint:
        merged["x-fal-runner-hint"] = str(hint)
    if start_timeout is not None:
        merged["x-fal-request-timeout"] = _start_timeout_header(start_timeout)
    return merged


def _start_timeout_header(start_timeout):
    if float(start_timeout) <= 1:
        raise ValueError("Timeout must be greater than 1 seconds")
    return _seconds(start_timeout)


class Queue:
    """The queue API of one client. Every method takes the endpoint id first; the request id
    may be passed positionally or as ``request_id=``."""

    def __init__(self, client):
        self._client = client

    @property
    def _transport(self):
        return self._client.transport

    def submit(self, endpoint_id, input=None, *, webhook_url=None, priority=None, hint=None,
               start_timeout=None, headers=None):
        """Queue a request and return its :class:`RequestHandle` (``.request_id``).

        Binary values in ``input`` are uploaded first. ``webhook_url`` is sent as
        ``fal_webhook``. Never retried: a lost answer could mean a job already queued.
        Raises :class:`ApiError` / :class:`ValidationError`, :class:`FalConnectionError`.
        """
        endpoint_id = normalize_endpoint_id(endpoint_id)
        request_headers = submit_headers(headers, priority=priority, hint=hint,
                                         start_timeout=start_timeout)
        input = self._client.storage.transform_input(input)
        query = {"fal_webhook": webhook_url} if webhook_url else None
        body, _ = self._transport.request(
            "POST", build_url(endpoint_id, subdomain="queue", query=query),
            input=input, headers=request_headers,
        )
        if not isinstance(body, dict) or not body.get("request_id"):
            raise FalError(f"the queue answered a submit without a request_id: {body!r:.200}")
        return RequestHandle(self, endpoint_id, body)

    def status(self, endpoint_id, request_id, *, logs=False, deadline=None):
        """The request's current :class:`QueueStatus` (``logs=True`` for its log lines).

        Retried on 429/502/503/504 and connection errors."""
        body, _ = self._transport.request(
            "GET", queue_request_url(endpoint_id, request_id, "/status",
                                     {"logs": "1" if logs else "0"}),
            retry=self._transport.retry, deadline=deadline,
        )
        return QueueStatus(body)

    def stream_status(self, endpoint_id, request_id, *, logs=False, deadline=None):
        """A :class:`FalStream` of raw status dicts from ``/status/stream`` (SSE); it ends
        after ``COMPLETED``. Raises :class:`ApiError` if the stream cannot be opened."""
        response = self._transport.dispatch(
            "GET", queue_request_url(endpoint_id, request_id, "/status/stream",
                                     {"logs": "1" if logs else "0"}),
            retry=self._transport.retry, stream=True, deadline=deadline,
            accept="text/event-stream",
        )
        if not response.ok:
            try:
                raise error_from_response(response)
            finally:
                response.close()
        return FalStream(response, deadline=deadline)

    def result(self, endpoint_id, request_id, *, deadline=None):
        """The request's output as a :class:`Result` (``.request_id`` set). If the model
        failed, raises the same :class:`ApiError` / :class:`ValidationError` it raised."""
        body, response = self._transport.request(
            "GET", queue_request_url(endpoint_id, request_id), retry=self._transport.retry,
            deadline=deadline,
        )
        return Result(body, response.headers.get("x-fal-request-id") or request_id)

    def cancel(self, endpoint_id, request_id, *, timeout=None):
        """Ask the queue to cancel the request; returns the answer's status
        (``"CANCELLATION_REQUESTED"``). Raises :class:`ApiError` (400 ``ALREADY_COMPLETED``,
        404 ``NOT_FOUND``)."""
        body, _ = self._transport.request(
            "PUT", queue_request_url(endpoint_id, request_id, "/cancel"), timeout=timeout,
        )
        return body.get("status") if isinstance(body, dict) else body

    def subscribe_to_status(self, endpoint_id, request_id, *, logs=False, on_queue_update=None,
                            poll_interval=None, mode="polling", timeout=None, deadline=None):
        """Wait until the request completes; return the final :class:`QueueStatus`.

        ``mode="polling"`` asks for the status every ``poll_interval`` seconds (one request
        at a time, never overlapping); ``"streaming"`` reads ``/status/stream``, adding each
        event's logs to the ones before so ``on_queue_update`` sees cumulative logs either
        way. Past ``timeout`` seconds (or ``deadline``) the request is cancelled, best
        effort, and :class:`FalTimeoutError` is raised with its ``request_id``.
        """
        if mode not in ("polling", "streaming"):
            raise ValueError(f"mode must be 'polling' or 'streaming', not {mode!r}")
        if timeout is not None:
            limit = time.monotonic() + float(timeout)
            deadline = limit if deadline is None else min(deadline, limit)
        interval = self._client.poll_interval if poll_interval is None else float(poll_interval)
        try:
            if mode == "streaming":
                return self._follow_stream(endpoint_id, request_id, logs, on_queue_update,
                                           deadline)
            return self._poll(endpoint_id, request_id, logs, on_queue_update, interval,
                              deadline)
        except FalTimeoutError:
            if deadline is None or time.monotonic() < deadline:
                raise
            self._cancel_quietly(endpoint_id, request_id)
            waited = f" after {timeout} s" if timeout is not None else ""
            raise FalTimeoutError(
                f"Client timed out waiting for request {request_id} to complete{waited}; "
                "it was cancelled", timeout=timeout, request_id=request_id,
            ) from None

    def _poll(self, endpoint_id, request_id, logs, on_queue_update, interval, deadline):
        while True:
            status = self.status(endpoint_id, request_id, logs=logs, deadline=deadline)
            if on_queue_update is not None:
                on_queue_update(status)
            if status.done:
                return status
            if deadline is not None and time.monotonic() + interval >= deadline:
                time.sleep(max(0.0, deadline - time.monotonic()))
                raise FalTimeoutError("deadline passed")
            time.sleep(interval)

    def _follow_stream(self, endpoint_id, request_id, logs, on_queue_update, deadline):
        seen_logs = []
        status = None
        with self.stream_status(endpoint_id, request_id, logs=logs, deadline=deadline) as events:
            for event in events:
                if not isinstance(event, dict):
                    continue
                seen_logs.extend(event.get("logs") or [])
                status = QueueStatus(event, seen_logs)
                if on_queue_update is not None:
                    on_queue_update(status)
                if status.status == COMPLETED:
                    return status
        if status is None or status.status != COMPLETED:
            # The stream ended early (a proxy or runtime restart); the status says the truth.
            status = self.status(endpoint_id, request_id, logs=logs, deadline=deadline)
            if not status.done:
                return self._poll(endpoint_id, request_id, logs, on_queue_update,
                                  self._client.poll_interval, deadline)
        return status

    def _cancel_quietly(self, endpoint_id, request_id):
        # Best effort: the caller is getting a timeout error either way.
        try:
            self.cancel(endpoint_id, request_id, timeout=5.0)
        except FalError:
            pass

