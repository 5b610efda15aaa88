"""falweb's fal client: the seed's JavaScript client API, in Python.

Module-level functions use one default :class:`FalClient`; ``config()`` changes it::

    from falweb import client as fal

    fal.config(credentials="key-id:key-secret")      # default: FAL_KEY / FAL_KEY_ID+SECRET
    result = fal.subscribe("fal-ai/fast-sdxl", input={"prompt": "a cat"}, logs=True,
                           on_queue_update=lambda update: print(update.status))
    print(result["images"][0]["url"], result.request_id)

``AsyncClient`` has the same API for asyncio (``await client.subscribe(...)``); it needs
the ``falweb[async]`` extra (httpx, websockets) and is imported only when first used.

Backends: fal itself (a key is needed), a credential proxy (``config(proxy_url=...)``), or
a local runtime (``config(hosts=Hosts("http://127.0.0.1:5000/local"))``, or the
``FALWEB_LOCAL_URL`` environment variable; no key needed, and keys from the environment are
never sent to it).
"""

from falweb.client.client import FalClient
from falweb.client.encoding import encode
from falweb.client.encoding import encode_file
from falweb.client.encoding import encode_image
from falweb.client.endpoints import ensure_endpoint_id_format
from falweb.client.endpoints import parse_endpoint_id
from falweb.client.errors import ApiError
from falweb.client.errors import FalConnectionError
from falweb.client.errors import FalError
from falweb.client.errors import FalTimeoutError
from falweb.client.errors import InvalidEndpointError
from falweb.client.errors import MissingCredentialsError
from falweb.client.errors import ValidationError
from falweb.client.retry import RetryPolicy
from falweb.client.status import AsyncRequestHandle
from falweb.client.status import QueueStatus
from falweb.client.status import RequestHandle
from falweb.client.status import Result
from falweb.client.storage_api import UploadError
from falweb.client.streaming import FalStream

default_client = FalClient()

queue = default_client.queue
storage = default_client.storage
realtime = default_client.realtime


def config(**settings):
    """Configure the default client (``credentials``, ``proxy_url``, ``hosts``, ``timeout``,
    ``poll_interval``, ``retry``); returns it."""
    return default_client.config(**settings)


def subscribe(endpoint_id, input=None, **options):
    """:meth:`FalClient.subscribe` on the default client."""
    return default_client.subscribe(endpoint_id, input, **options)


def submit(endpoint_id, input=None, **options):
    """:meth:`Queue.submit` on the default client."""
    return default_client.queue.submit(endpoint_id, input, **options)


def status(endpoint_id, request_id, *, logs=False):
    """:meth:`Queue.status` on the default client."""
    return default_client.queue.status(endpoint_id, request_id, logs=logs)


def stream_status(endpoint_id, request_id, *, logs=False):
    """:meth:`Queue.stream_status` on the default client."""
    return default_client.queue.stream_status(endpoint_id, request_id, logs=logs)


def result(endpoint_id, request_id):
    """:meth:`Queue.result` on the default client."""
    return default_client.queue.result(endpoint_id, request_id)


def cancel(endpoint_id, request_id):
    """:meth:`Queue.cancel` on the default client."""
    return default_client.queue.cancel(endpoint_id, request_id)


def run(endpoint_id, input=None, **options):
    """:meth:`FalClient.run` on the default client."""
    return default_client.run(endpoint_id, input, **options)


def stream(endpoint_id, input=None, **options):
    """:meth:`FalClient.stream` on the default client."""
    return default_client.stream(endpoint_id, input, **options)


def upload(data, content_type=None, file_name=None, **options):
    """:meth:`Storage.upload` on the default client."""
    return default_client.storage.upload(data, content_type, file_name, **options)


def upload_file(path, **options):
    """:meth:`Storage.upload_file` on the default client."""
    return default_client.storage.upload_file(path, **options)


def upload_image(image, format="jpeg", **options):
    """:meth:`Storage.upload_image` on the default client."""
    return default_client.storage.upload_image(image, format, **options)


def get_handle(endpoint_id, request_id):
    """:meth:`Queue.get_handle` on the default client."""
    return default_client.queue.get_handle(endpoint_id, request_id)


def __getattr__(name):
    # The async client needs httpx and websockets (the falweb[async] extra): imported on
    # first use, so the sync client works without them.
    if name == "AsyncClient":
        from falweb.client.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ApiError", "AsyncClient", "AsyncRequestHandle", "FalClient", "FalConnectionError", "FalError",
    "FalStream", "FalTimeoutError", "InvalidEndpointError", "MissingCredentialsError",
    "QueueStatus", "RequestHandle", "Result", "RetryPolicy", "UploadError", "ValidationError",
    "cancel", "config", "default_client", "encode", "encode_file", "encode_image",
    "ensure_endpoint_id_format", "get_handle", "parse_endpoint_id", "queue", "realtime", "result",
    "run", "status", "storage", "stream", "stream_status", "submit", "subscribe", "upload",
    "upload_file", "upload_image",
]
