"""``FalClient``: one configured client with the seed's API (run, subscribe, queue, stream,
storage, realtime); :class:`ClientBase` holds what it shares with the async client."""

import time
from urllib.parse import urlencode

from falweb.client.effects import Call
from falweb.client.effects import Notify
from falweb.client.effects import OpenStream
from falweb.client.endpoints import build_url
from falweb.client.endpoints import normalize_endpoint_id
from falweb.client.errors import FalError
from falweb.client.queue_api import Queue
from falweb.client.queue_api import _start_timeout_header
from falweb.client.queue_api import submit_plan
from falweb.client.queue_api import wait_and_fetch_plan
from falweb.client.realtime_api import Realtime
from falweb.client.realtime_api import token_plan
from falweb.client.retry import RetryPolicy
from falweb.client.status import RequestHandle
from falweb.client.status import Result
from falweb.client.storage_api import Storage
from falweb.client.transport import Transport

_UNSET = object()

CONNECTION_MODES = ("server", "client")


def subscribe_plan(client, endpoint_id, input, *, logs=False, on_enqueue=None,
                   on_queue_update=None, poll_interval=None, mode="polling", webhook_url=None,
                   timeout=None, priority=None, hint=None, start_timeout=None, headers=None):
    if mode not in ("polling", "streaming"):
        raise ValueError(f"mode must be 'polling' or 'streaming', not {mode!r}")
    # The timeout covers the whole call, the submit included.
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    handle = yield from submit_plan(client, endpoint_id, input, webhook_url=webhook_url,
                                    priority=priority, hint=hint, start_timeout=start_timeout,
                                    headers=headers)
    if on_enqueue is not None:
        yield Notify(on_enqueue, (handle.request_id,))
    return (yield from wait_and_fetch_plan(
        client, handle.endpoint_id, handle.request_id, timeout=timeout, deadline=deadline,
        cancel=True,
        logs=logs, on_queue_update=on_queue_update, poll_interval=poll_interval, mode=mode))


def run_plan(client, endpoint_id, input, *, method="post", start_timeout=None, headers=None,
             timeout=None):
    endpoint_id = normalize_endpoint_id(endpoint_id)
    request_headers = dict(headers or {})
    if start_timeout is not None:
        request_headers["x-fal-request-timeout"] = _start_timeout_header(start_timeout)
    input = yield from client.storage.transform_input_plan(input)
    is_get = method.lower() == "get"
    url = build_url(endpoint_id, query=_query(input) if is_get else None)
    answer = yield Call(method, url, input=None if is_get else input, headers=request_headers,
                        timeout=timeout)
    return Result(answer.body, answer.request_id)


def stream_plan(client, endpoint_id, input, *, path="/stream", headers=None, timeout=None,
                connection_mode="server", token_provider=None, token_expiration=None):
    if connection_mode not in CONNECTION_MODES:
        raise ValueError(f"connection_mode must be one of {CONNECTION_MODES}, "
                         f"not {connection_mode!r}")
    endpoint_id = normalize_endpoint_id(endpoint_id)
    input = yield from client.storage.transform_input_plan(input)
    suffix = "/" + path.strip("/") if path else ""
    if suffix and endpoint_id.endswith(suffix):
        suffix = ""
    url = build_url(endpoint_id, path=suffix)
    if connection_mode == "server":
        return (yield OpenStream(Call("POST", url, input=input, headers=headers,
                                      timeout=timeout, accept="text/event-stream"), keep=True))
    # The JS client's browser mode: a short-lived token for this app in the query, no key,
    # no proxy; the token itself is fetched with the client's credentials or proxy.
    if token_provider is not None:
        token = yield from _provided(token_provider, f"{endpoint_id}{suffix}")
    else:
        token = yield from token_plan(endpoint_id, token_expiration)
    call = Call("POST", f"{url}?{urlencode({'fal_jwt_token': token})}", input=input,
                headers=headers, timeout=timeout, accept="text/event-stream", direct=True)
    return (yield OpenStream(call, keep=True))


def _provided(token_provider, app_path):
    return (yield Notify(token_provider, (app_path,)))


class ClientBase:
    """What the sync and async clients share: settings, the queue, storage and realtime
    objects, and every call as a plan run by the client's transport."""

    handle_class = RequestHandle

    def _setup(self, transport, poll_interval, realtime):
        self.transport = transport
        self.poll_interval = float(poll_interval)
        self.queue = Queue(self)
        self.storage = Storage(self)
        self.realtime = realtime(self)

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

    def __repr__(self):
        # Never the credentials: only whether there are any.
        has_key = self.transport.credentials is not None
        return (f"{type(self).__name__}(hosts={self.transport.hosts!r}, "
                f"proxy_url={self.proxy_url!r}, "
                f"credentials={'<set>' if has_key else '<from env>'})")

    # -- queue shortcuts, as in fal's module-level API --------------------------------------

    def submit(self, endpoint_id, input=None, **options):
        """:meth:`Queue.submit`."""
        return self.queue.submit(endpoint_id, input, **options)

    def get_handle(self, endpoint_id, request_id):
        """:meth:`Queue.get_handle`."""
        return self.queue.get_handle(endpoint_id, request_id)

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

    # -- storage shortcuts, as in fal's Python client -----------------------------------------

    def upload(self, data, content_type=None, file_name=None, **options):
        """:meth:`Storage.upload`."""
        return self.storage.upload(data, content_type, file_name, **options)

    def upload_file(self, path, **options):
        """:meth:`Storage.upload_file`."""
        return self.storage.upload_file(path, **options)

    def upload_image(self, image, format="jpeg", **options):
        """:meth:`Storage.upload_image`."""
        return self.storage.upload_image(image, format, **options)

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
        return self.transport.run(subscribe_plan(
            self, endpoint_id, input, logs=logs, on_enqueue=on_enqueue,
            on_queue_update=on_queue_update, poll_interval=poll_interval, mode=mode,
            webhook_url=webhook_url, timeout=timeout, priority=priority, hint=hint,
            start_timeout=start_timeout, headers=headers))

    def run(self, endpoint_id, input=None, *, method="post", start_timeout=None, headers=None,
            timeout=None):
        """Call the endpoint directly (``https://fal.run/{id}``), wait, return the
        :class:`Result` (``.request_id`` from ``x-fal-request-id``). ``method="get"`` sends
        ``input`` as the query string. Never retried. ``timeout`` overrides the client's
        HTTP timeout for this call (generation may take long).
        Raises :class:`ApiError` / :class:`ValidationError`, :class:`FalConnectionError`,
        :class:`FalTimeoutError`.
        """
        return self.transport.run(run_plan(self, endpoint_id, input, method=method,
                                           start_timeout=start_timeout, headers=headers,
                                           timeout=timeout))

    def stream(self, endpoint_id, input=None, *, path="/stream", headers=None, timeout=None,
               connection_mode="server", token_provider=None, token_expiration=None):
        """POST ``input`` to the endpoint's ``/stream`` and return a :class:`FalStream`:
        iterate it for events, ``.done()`` for the last (the final output), ``.request_id``.

        ``path`` is appended unless the id already ends with it. ``timeout`` is the longest
        wait for each piece of the answer. ``connection_mode="client"`` is the JS client's
        browser mode: a short-lived token for the app (from ``/tokens/``, through the proxy
        when there is one, or from ``token_provider(app_path)``) goes in the query and the
        stream is read straight from the backend without the key. Raises :class:`ApiError`
        when the stream cannot be opened.
        """
        return self.transport.run(stream_plan(
            self, endpoint_id, input, path=path, headers=headers, timeout=timeout,
            connection_mode=connection_mode, token_provider=token_provider,
            token_expiration=token_expiration))


class FalClient(ClientBase):
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
        self._setup(Transport(credentials=credentials, proxy_url=proxy_url, hosts=hosts,
                              timeout=timeout, session=session, retry=retry),
                    poll_interval, Realtime)

    def close(self):
        """Close the HTTP connection pool."""
        self.transport.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
