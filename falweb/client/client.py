"""``FalClient``: one configured client with the seed's API (run, subscribe, queue, stream,
storage, realtime)."""

import time

from falweb.client.endpoints import build_url
from falweb.client.endpoints import normalize_endpoint_id
from falweb.client.errors import FalError
from falweb.client.errors import FalTimeoutError
from falweb.client.queue_api import Queue
from falweb.client.queue_api import _start_timeout_header
from falweb.client.realtime_api import Realtime
from falweb.client.retry import RetryPolicy
from falweb.client.status import Result
from falweb.client.storage_api import Storage
from falweb.client.streaming import FalStream
from falweb.client.transport import Transport
from falweb.client.transport import error_from_response

_UNSET = object()


class FalClient:
    """A fal client: credentials, proxy, hosts, timeouts; safe to share between threads.

    ``credentials``: a key string (``"id:secret"`` or ``FAL_KEY``) or a zero-argument
    callable returning one; default ``FAL_KEY`` / ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``, read
    at each request (so importing never fails). ``proxy_url``: send every API call to this
    URL with the fal URL in ``x-fal-target-url`` (the proxy adds the key). ``hosts``: a
    :class:`falweb.hosts.Hosts`; default ``Hosts(FALWEB_LOCAL_URL)`` when that variable is
    set, else fal itself. ``timeout``: seconds for each HTTP request. ``poll_interval``:
    seconds between status polls. ``session``: a ``requests.Session`` to use. ``retry``: the
    :class:`RetryPolicy` of status and result GETs.
    """

    def __init__(self, credentials=None, proxy_url=None, hosts=None, timeout=60.0,
                 poll_interval=0.5, session=None, retry=None):
        self.transport = Transport(credentials=credentials, proxy_url=proxy_url, hosts=hosts,
                                   timeout=timeout, session=session, retry=retry)
        self.poll_interval = float(poll_interval)
        self.queue = Queue(self)
        self.storage = Storage(self.transport)
        self.realtime = Realtime(self)

    def config(self, credentials=_UNSET, proxy_url=_UNSET, hosts=_UNSET, timeout=_UNSET,
               poll_interval=_UNSET, retry=_UNSET):
        """Change settings in place (only the ones given); returns the client."""
        settings = {name: value for name, value in (
            ("credentials", credentials), ("proxy_url", proxy_url), ("hosts", hosts),
            ("timeout", timeout), ("retry", retry)) if value is not _UNSET}
        if "retry" in settings and settings["retry"] is None:
            settings["retry"] = RetryPolicy()
        self.transport.configure(**settings)
        if poll_interval is not _UNSET:
            self.poll_interval = float(poll_interval)
        return self

    @property
    def hosts(self):
        return self.transport.hosts

    @property
    def proxy_url(self):
        return self.transport.proxy_url

    def close(self):
        """Close the HTTP connection pool."""
        self.transport.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        # Never the credentials: only whether there are any.
        has_key = self.transport.credentials is not None
        return (f"FalClient(hosts={self.transport.hosts!r}, proxy_url={self.proxy_url!r}, "
                f"credentials={'<set>' if has_key else '<from env>'})")

    # -- queue shortcuts, as in fal's module-level API --------------------------------------

    def submit(self, endpoint_id, input=None, **options):
        """:meth:`Queue.submit`."""
        return self.queue.submit(endpoint_id, input, **options)

    def status(self, endpoint_id, request_id, *, logs=False):
        """:meth:`Queue.status`."""
        return self.queue.status(endpoint_id, request_id, logs=logs)

    def stream_status(self, endpoint_id, request_id, *, logs=False):
        """:meth:`Queue.stream_status`."""
        return self.queue.stream_status(endpoint_id, request_id, logs=logs)

    def result(self, endpoint_id, request_id):
        """:meth:`Queue.result`."""
        return self.queue.result(endpoint_id, request_id)

    def cancel(self, endpoint_id, request_id):
        """:meth:`Queue.cancel`."""
        return self.queue.cancel(endpoint_id, request_id)

    # -- the seed's calls --------------------------------------------------------------------

    def subscribe(self, endpoint_id, input=None, *, logs=False, on_enqueue=None,
                  on_queue_update=None, poll_interval=None, mode="polling", webhook_url=None,
                  timeout=None, priority=None, hint=None, start_timeout=None, headers=None):
        """Submit to the queue, wait for completion, return the :class:`Result`.

        ``on_enqueue(request_id)`` is called once the request is queued;
        ``on_queue_update(status)`` with every :class:`QueueStatus` (``logs=True`` to get log
        lines). ``mode``: ``"polling"`` (every ``poll_interval`` s, default the client's) or
        ``"streaming"`` (the SSE status stream). ``timeout`` (seconds, whole call): when it
        passes the request is cancelled, best effort, and :class:`FalTimeoutError` (with
        ``request_id``) is raised. ``webhook_url``, ``priority``, ``hint``,
        ``start_timeout``, ``headers`` go to the submit.
        Raises :class:`ApiError` / :class:`ValidationError` (also a model's failure, from the
        result), :class:`FalConnectionError`.
        """
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        handle = self.queue.submit(endpoint_id, input, webhook_url=webhook_url,
                                   priority=priority, hint=hint, start_timeout=start_timeout,
                                   headers=headers)
        if on_enqueue is not None:
            on_enqueue(handle.request_id)
        self.queue.subscribe_to_status(
            handle.endpoint_id, handle.request_id, logs=logs, on_queue_update=on_queue_update,
            poll_interval=poll_interval, mode=mode, timeout=timeout, deadline=deadline,
        )
        try:
            return self.queue.result(handle.endpoint_id, handle.request_id, deadline=deadline)
        except FalTimeoutError as exc:
            # Completed already, so there is nothing left to cancel.
            raise FalTimeoutError(
                f"Client timed out fetching the result of request {handle.request_id}",
                timeout=timeout, request_id=handle.request_id,
            ) from exc

    def run(self, endpoint_id, input=None, *, method="post", start_timeout=None, headers=None,
            timeout=None):
        """Call the endpoint directly (``https://fal.run/{id}``), wait, return the
        :class:`Result` (``.request_id`` from ``x-fal-request-id``). ``method="get"`` sends
        ``input`` as the query string. Never retried. ``timeout`` overrides the client's
        HTTP timeout for this call (generation may take long).
        Raises :class:`ApiError` / :class:`ValidationError`, :class:`FalConnectionError`,
        :class:`FalTimeoutError`.
        """
        endpoint_id = normalize_endpoint_id(endpoint_id)
        request_headers = dict(headers or {})
        if start_timeout is not None:
            request_headers["x-fal-request-timeout"] = _start_timeout_header(start_timeout)
        input = self.storage.transform_input(input)
        is_get = method.lower() == "get"
        url = build_url(endpoint_id, query=_query(input) if is_get else None)
        body, response = self.transport.request(
            method, url, input=None if is_get else input, headers=request_headers,
            timeout=timeout,
        )
        return Result(body, response.headers.get("x-fal-request-id") or None)

    def stream(self, endpoint_id, input=None, *, path="/stream", headers=None, timeout=None):
        """POST ``input`` to the endpoint's ``/stream`` and return a :class:`FalStream`:
        iterate it for events, ``.done()`` for the last (the final output), ``.request_id``.

        ``path`` is appended unless the id already ends with it. ``timeout`` is the longest
        wait for each piece of the answer. Raises :class:`ApiError` when the stream cannot
        be opened.
        """
        endpoint_id = normalize_endpoint_id(endpoint_id)
        input = self.storage.transform_input(input)
        suffix = "/" + path.strip("/") if path else ""
        if suffix and endpoint_id.endswith(suffix):
            suffix = ""
        response = self.transport.dispatch(
            "POST", build_url(endpoint_id, path=suffix), input=input, headers=headers,
            stream=True, timeout=timeout, accept="text/event-stream",
        )
        if not response.ok:
            try:
                raise error_from_response(response)
            finally:
                response.close()
        return FalStream(response)


def _query(input):
    if input is None:
        return None
    if not isinstance(input, dict):
        raise FalError("a GET run needs its input as a dict (it becomes the query string)")
    return {key: value if isinstance(value, str) else _json_scalar(value)
            for key, value in input.items()}


def _json_scalar(value):
    # JS's String(value): true -> "true", 3 -> "3"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
