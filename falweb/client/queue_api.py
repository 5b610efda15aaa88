"""``fal.queue``: submit, status, status stream, result, cancel (fal-protocol §4, §5).

Each call is a plan (:mod:`falweb.client.effects`) written once; :class:`Queue` hands it to
its client's transport, so the same class serves the sync client (methods return values)
and the async one (methods return coroutines).
"""

import time

from falweb.client.effects import END
from falweb.client.effects import Call
from falweb.client.effects import NextEvent
from falweb.client.effects import Notify
from falweb.client.effects import OpenStream
from falweb.client.effects import Sleep
from falweb.client.endpoints import build_url
from falweb.client.endpoints import normalize_endpoint_id
from falweb.client.endpoints import queue_request_url
from falweb.client.errors import FalError
from falweb.client.errors import FalTimeoutError
from falweb.client.status import COMPLETED
from falweb.client.status import QueueStatus
from falweb.client.status import Result

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


def _logs_query(logs):
    return {"logs": "1" if logs else "0"}


def _deadline(timeout, deadline):
    if timeout is None:
        return deadline
    limit = time.monotonic() + float(timeout)
    return limit if deadline is None else min(deadline, limit)


# -- plans -------------------------------------------------------------------------------------


def submit_plan(client, endpoint_id, input, *, webhook_url=None, priority=None, hint=None,
                start_timeout=None, headers=None):
    endpoint_id = normalize_endpoint_id(endpoint_id)
    request_headers = submit_headers(headers, priority=priority, hint=hint,
                                     start_timeout=start_timeout)
    input = yield from client.storage.transform_input_plan(input)
    query = {"fal_webhook": webhook_url} if webhook_url else None
    answer = yield Call("POST", build_url(endpoint_id, subdomain="queue", query=query),
                        input=input, headers=request_headers)
    body = answer.body
    if not isinstance(body, dict) or not body.get("request_id"):
        raise FalError(f"the queue answered a submit without a request_id: {body!r:.200}")
    return client.queue.handle(endpoint_id, body)


def status_plan(endpoint_id, request_id, logs=False, deadline=None):
    answer = yield Call("GET", queue_request_url(endpoint_id, request_id, "/status",
                                                 _logs_query(logs)),
                        retry=True, deadline=deadline)
    return QueueStatus(answer.body)


def status_stream_call(endpoint_id, request_id, logs=False, deadline=None):
    return Call("GET", queue_request_url(endpoint_id, request_id, "/status/stream",
                                         _logs_query(logs)),
                retry=True, deadline=deadline, accept="text/event-stream")


def result_plan(endpoint_id, request_id, deadline=None):
    answer = yield Call("GET", queue_request_url(endpoint_id, request_id), retry=True,
                        deadline=deadline)
    return Result(answer.body, answer.request_id or request_id)


def cancel_plan(endpoint_id, request_id, timeout=None):
    answer = yield Call("PUT", queue_request_url(endpoint_id, request_id, "/cancel"),
                        timeout=timeout)
    body = answer.body
    return body.get("status") if isinstance(body, dict) else body


def subscribe_to_status_plan(client, endpoint_id, request_id, *, logs=False,
                             on_queue_update=None, poll_interval=None, mode="polling",
                             timeout=None, deadline=None, cancel_on_timeout=True):
    if mode not in ("polling", "streaming"):
        raise ValueError(f"mode must be 'polling' or 'streaming', not {mode!r}")
    deadline = _deadline(timeout, deadline)
    interval = client.poll_interval if poll_interval is None else float(poll_interval)
    try:
        if mode == "streaming":
            return (yield from _follow_stream_plan(client, endpoint_id, request_id, logs,
                                                   on_queue_update, deadline))
        return (yield from _poll_plan(endpoint_id, request_id, logs, on_queue_update,
                                      interval, deadline))
    except FalTimeoutError:
        if deadline is None or time.monotonic() < deadline:
            raise
        waited = f" after {timeout} s" if timeout is not None else ""
        if not cancel_on_timeout:
            raise FalTimeoutError(
                f"Client timed out waiting for request {request_id} to complete{waited}",
                timeout=timeout, request_id=request_id) from None
        # Best effort: the caller is getting a timeout error either way.
        try:
            yield from cancel_plan(endpoint_id, request_id, timeout=5.0)
        except FalError:
            pass
        raise FalTimeoutError(
            f"Client timed out waiting for request {request_id} to complete{waited}; "
            "it was cancelled", timeout=timeout, request_id=request_id,
        ) from None


def _poll_plan(endpoint_id, request_id, logs, on_queue_update, interval, deadline):
    while True:
        status = yield from status_plan(endpoint_id, request_id, logs, deadline)
        if on_queue_update is not None:
            yield Notify(on_queue_update, (status,))
        if status.done:
            return status
        if deadline is not None and time.monotonic() + interval >= deadline:
            yield Sleep(deadline - time.monotonic())
            raise FalTimeoutError("deadline passed")
        yield Sleep(interval)


def _follow_stream_plan(client, endpoint_id, request_id, logs, on_queue_update, deadline):
    seen_logs = []
    status = None
    events = yield OpenStream(status_stream_call(endpoint_id, request_id, logs, deadline))
    while True:
        event = yield NextEvent(events)
        if event is END:
            break
        if not isinstance(event, dict):
            continue
        seen_logs.extend(event.get("logs") or [])
        status = QueueStatus(event, seen_logs)
        if on_queue_update is not None:
            yield Notify(on_queue_update, (status,))
        if status.status == COMPLETED:
            return status
    # The stream ended early (a proxy or runtime restart); the status says the truth.
    status = yield from status_plan(endpoint_id, request_id, logs, deadline)
    if not status.done:
        return (yield from _poll_plan(endpoint_id, request_id, logs, on_queue_update,
                                      client.poll_interval, deadline))
    return status


def wait_and_fetch_plan(client, endpoint_id, request_id, *, timeout=None, deadline=None,
                        cancel=False, **options):
    """Wait for completion (``subscribe_to_status``), then fetch the :class:`Result`."""
    deadline = _deadline(timeout, deadline)
    yield from subscribe_to_status_plan(client, endpoint_id, request_id, timeout=timeout,
                                        deadline=deadline, cancel_on_timeout=cancel, **options)
    try:
        return (yield from result_plan(endpoint_id, request_id, deadline))
    except FalTimeoutError as exc:
        # Completed already, so there is nothing left to cancel.
        raise FalTimeoutError(
            f"Client timed out fetching the result of request {request_id}",
            timeout=timeout, request_id=request_id,
        ) from exc


class Queue:
    """The queue API of one client. Every method takes the endpoint id first; the request id
    may be passed positionally or as ``request_id=``. With :class:`~falweb.client.AsyncClient`
    every method returns a coroutine."""

    def __init__(self, client):
        self._client = client

    def _run(self, plan):
        return self._client.transport.run(plan)

    def handle(self, endpoint_id, raw):
        """The client's request handle for a submit answer ``raw``."""
        return self._client.handle_class(self, endpoint_id, raw)

    def get_handle(self, endpoint_id, request_id):
        """A handle for a request submitted earlier (fal's ``get_handle``)."""
        endpoint_id = normalize_endpoint_id(endpoint_id)
        url = queue_request_url(endpoint_id, request_id)
        return self.handle(endpoint_id, {"request_id": request_id, "response_url": url,
                                         "status_url": url + "/status",
                                         "cancel_url": url + "/cancel"})

    def submit(self, endpoint_id, input=None, *, webhook_url=None, priority=None, hint=None,
               start_timeout=None, headers=None):
        """Queue a request and return its :class:`RequestHandle` (``.request_id``).

        Binary values in ``input`` are uploaded first. ``webhook_url`` is sent as
        ``fal_webhook``. Never retried: a lost answer could mean a job already queued.
        Raises :class:`ApiError` / :class:`ValidationError`, :class:`FalConnectionError`.
        """
        return self._run(submit_plan(self._client, endpoint_id, input,
                                     webhook_url=webhook_url, priority=priority, hint=hint,
                                     start_timeout=start_timeout, headers=headers))

    def status(self, endpoint_id, request_id, *, logs=False, deadline=None):
        """The request's current :class:`QueueStatus` (``logs=True`` for its log lines).

        Retried on 429/502/503/504 and connection errors."""
        return self._run(status_plan(endpoint_id, request_id, logs, deadline))

    def stream_status(self, endpoint_id, request_id, *, logs=False, deadline=None):
        """A :class:`FalStream` of raw status dicts from ``/status/stream`` (SSE); it ends
        after ``COMPLETED``. Raises :class:`ApiError` if the stream cannot be opened."""
        return self._run(_open_plan(status_stream_call(endpoint_id, request_id, logs,
                                                       deadline)))

    def result(self, endpoint_id, request_id, *, deadline=None):
        """The request's output as a :class:`Result` (``.request_id`` set). If the model
        failed, raises the same :class:`ApiError` / :class:`ValidationError` it raised."""
        return self._run(result_plan(endpoint_id, request_id, deadline))

    def cancel(self, endpoint_id, request_id, *, timeout=None):
        """Ask the queue to cancel the request; returns the answer's status
        (``"CANCELLATION_REQUESTED"``). Raises :class:`ApiError` (400 ``ALREADY_COMPLETED``,
        404 ``NOT_FOUND``)."""
        return self._run(cancel_plan(endpoint_id, request_id, timeout))

    def subscribe_to_status(self, endpoint_id, request_id, *, logs=False, on_queue_update=None,
                            poll_interval=None, mode="polling", timeout=None, deadline=None):
        """Wait until the request completes; return the final :class:`QueueStatus`.

        ``mode="polling"`` asks for the status every ``poll_interval`` seconds (one request
        at a time, never overlapping); ``"streaming"`` reads ``/status/stream``, adding each
        event's logs to the ones before so ``on_queue_update`` sees cumulative logs either
        way. Past ``timeout`` seconds (or ``deadline``) the request is cancelled, best
        effort, and :class:`FalTimeoutError` is raised with its ``request_id``.
        """
        return self._run(subscribe_to_status_plan(
            self._client, endpoint_id, request_id, logs=logs, on_queue_update=on_queue_update,
            poll_interval=poll_interval, mode=mode, timeout=timeout, deadline=deadline))

    def wait_for_result(self, endpoint_id, request_id, *, timeout=None, cancel=False,
                        **options):
        """Wait until the request completes (options as :meth:`subscribe_to_status`), then
        return its :class:`Result`. Past ``timeout`` seconds :class:`FalTimeoutError` is
        raised; the request is cancelled only when ``cancel`` is true."""
        return self._run(wait_and_fetch_plan(self._client, endpoint_id, request_id,
                                             timeout=timeout, cancel=cancel, **options))


def _open_plan(call):
    return (yield OpenStream(call, keep=True))
