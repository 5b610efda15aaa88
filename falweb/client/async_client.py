"""``AsyncClient``: the same API as :class:`~falweb.client.FalClient`, for asyncio, on
``httpx`` and ``websockets`` (the ``falweb[async]`` extra).

Every call is the same plan the sync client runs (:mod:`falweb.client.effects`), so URLs,
headers, retries, errors, proxy mode, uploads and the subscribe loop behave identically;
only the I/O differs. Calls are awaited::

    async with AsyncClient() as fal:
        result = await fal.subscribe("fal-ai/fast-sdxl", {"prompt": "a cat"},
                                     on_queue_update=print)
        handle = await fal.submit("fal-ai/fast-sdxl", {"prompt": "a dog"})
        async for status in handle.iter_events(logs=True):
            print(status.status)
        stream = await fal.stream("fal-ai/flux/dev", {"prompt": "a bird"})
        async for event in stream:
            print(event)

Callbacks (``on_enqueue``, ``on_queue_update``, realtime ``on_result``) may be plain
functions or coroutine functions.
"""

from falweb.client.async_realtime import AsyncRealtime
from falweb.client.async_transport import AsyncTransport
from falweb.client.client import ClientBase
from falweb.client.status import AsyncRequestHandle


class AsyncClient(ClientBase):
    """An async fal client; settings as :class:`~falweb.client.FalClient` (``http``: an
    ``httpx.AsyncClient`` to use instead of ``session``). Use it from one event loop, and
    close it (``await client.aclose()`` or ``async with``)."""

    handle_class = AsyncRequestHandle

    def __init__(self, credentials=None, proxy_url=None, hosts=None, timeout=60.0,
                 poll_interval=0.5, http=None, retry=None):
        self._setup(AsyncTransport(credentials=credentials, proxy_url=proxy_url, hosts=hosts,
                                   timeout=timeout, http=http, retry=retry),
                    poll_interval, AsyncRealtime)

    async def aclose(self):
        """Close the HTTP connection pool."""
        await self.transport.aclose()

    close = aclose

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
