"""``client.realtime.connect`` for the async client: a realtime session on ``websockets``
and asyncio tasks. The session's rules (throttle, token refresh, reconnect, state) are
:mod:`falweb.client.realtime_core`, shared with the sync connection; this module only does
the I/O: one supervisor task per connection, one reader task per open socket."""

import asyncio
import inspect
import logging
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.exceptions import WebSocketException

from falweb.client.errors import ApiError
from falweb.client.errors import FalConnectionError
from falweb.client.errors import FalError
from falweb.client.errors import FalTimeoutError
from falweb.client.realtime_core import CLOSED
from falweb.client.realtime_core import TOKEN_EXPIRATION_SECONDS
from falweb.client.realtime_core import RealtimeCore
from falweb.client.realtime_core import route
from falweb.client.realtime_core import token_plan

log = logging.getLogger(__name__)

_END = object()
RESULTS_KEPT = 100


class AsyncRealtime:
    """``client.realtime`` of the async client."""

    def __init__(self, client):
        self._client = client

    async def get_temporary_auth_token(self, endpoint_id, expiration=TOKEN_EXPIRATION_SECONDS):
        """A JWT for ``endpoint_id``'s app from ``POST {REST}/tokens/``."""
        return await self._client.transport.run(token_plan(endpoint_id, expiration))

    def connect(self, endpoint_id, *, on_result=None, on_error=None, path="/realtime",
                max_buffering=None, token_provider=None, token_expiration=None,
                throttle_interval=0.128, reconnect=None, timeout=None):
        """An :class:`AsyncRealtimeConnection` (options as the sync
        :meth:`~falweb.client.realtime_api.Realtime.connect`; callbacks and the
        ``token_provider`` may be coroutine functions). Its socket opens on the first
        ``send``."""
        core = RealtimeCore(endpoint_id, path=path, max_buffering=max_buffering,
                            throttle_interval=throttle_interval,
                            token_expiration=token_expiration, token_provider=token_provider,
                            reconnect=reconnect)
        return AsyncRealtimeConnection(self._client, core, on_result, on_error, timeout)


class AsyncRealtimeConnection:
    """A realtime session: ``send(input)`` (no await needed), ``await close()``, ``state``;
    ``async for result in connection`` or ``await recv()``. Use it as ``async with``."""

    def __init__(self, client, core, on_result, on_error, timeout):
        self._client = client
        self._core = core
        self.endpoint_id = core.endpoint_id
        self._on_result = on_result
        self._on_error = on_error
        self._timeout = timeout
        self._wake = asyncio.Event()
        self._ws = None
        self._reader = None
        self._results = asyncio.Queue()
        self._supervisor = None
        self._sends = set()

    @property
    def state(self):
        """``"idle"`` (nothing sent yet), ``"connecting"``, ``"open"`` or ``"closed"``."""
        return self._core.state

    # -- the supervisor ----------------------------------------------------------------------------

    async def _supervise(self):
        try:
            while True:
                self._wake.clear()
                action = self._core.next_action(time.monotonic(), self._ws is not None)
                if action[0] == "wait":
                    try:
                        await asyncio.wait_for(self._wake.wait(), action[1])
                    except TimeoutError:
                        pass
                elif action[0] == "close":
                    break
                elif action[0] == "send":
                    await _send(self._ws, action[1])
                elif action[0] == "token":
                    await self._refresh_token()
                else:
                    await self._open()
        finally:
            ws, self._ws = self._ws, None
            self._core.state = CLOSED
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
            if ws is not None:
                await ws.close()
            self._results.put_nowait(_END)

    async def _refresh_token(self):
        try:
            token = await self._client.transport.run(self._core.token_plan())
        except FalError as exc:
            if self._ws is None:
                self._core.lost(time.monotonic(), normal=False)
            else:
                self._core.token_failed(time.monotonic())
            await self._deliver_error(exc)
            return
        self._core.token_fetched(token, time.monotonic())

    async def _open(self):
        url = self._client.transport.hosts.resolve(self._core.url())
        timeout = self._timeout or self._client.transport.timeout
        try:
            ws = await ws_connect(url, open_timeout=timeout, max_size=None)
        except (OSError, TimeoutError, WebSocketException) as exc:
            self._core.lost(time.monotonic(), normal=False)
            host = url.split("/")[2] if "//" in url else url[:60]
            await self._deliver_error(FalConnectionError(
                f"Cannot open the realtime socket to {host}: {type(exc).__name__}", host=host))
            return
        self._ws = ws
        self._core.opened()
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))

    # -- the reader ------------------------------------------------------------------------------

    async def _read(self, ws):
        normal, unauthorized = False, False
        try:
            async for message in ws:
                kind = await self._handle(message)
                unauthorized = unauthorized or kind == "unauthorized"
            normal = True
        except ConnectionClosed as exc:
            received = exc.rcvd
            code = received.code if received is not None else 1006
            if not unauthorized:
                reason = received.reason if received is not None else "connection lost"
                await self._deliver_error(ApiError(f"Error closing the connection: {reason}",
                                                   code))
        finally:
            if self._ws is ws:
                self._ws = None
                self._core.lost(time.monotonic(), normal=normal, unauthorized=unauthorized)
                self._wake.set()

    async def _handle(self, data):
        found = route(data)
        if found is None:
            return None
        kind, value = found
        if kind == "result":
            if self._results.qsize() >= RESULTS_KEPT:
                self._results.get_nowait()  # nobody iterates: keep the newest only
            self._results.put_nowait(value)
            if self._on_result is not None:
                try:
                    await _call(self._on_result, value)
                except Exception:  # a callback's bug must not kill the reader
                    log.exception("realtime on_result callback failed")
        else:
            await self._deliver_error(value)
        return kind

    async def _deliver_error(self, error):
        if self._on_error is None:
            log.warning("realtime error: %s", error)
            return
        try:
            await _call(self._on_error, error)
        except Exception:
            log.exception("realtime on_error callback failed")

    # -- the caller's side -----------------------------------------------------------------------

    def send(self, input):
        """Send one input (msgpack binary frame; ``bytes`` as given), throttled: within one
        ``throttle_interval`` only the latest input is sent. Call it from the event loop's
        thread. Raises :class:`FalError` after ``close()``."""
        if self._core.closing:
            raise FalError("the realtime connection is closed")
        self._core.offer(input)
        # Leading edge: with the socket open and the window free, it goes now, before a
        # next send() could replace it (the send itself completes in a task).
        action = self._core.next_action(time.monotonic(), self._ws is not None)
        if action[0] == "send":
            self._sends.add(asyncio.get_running_loop().create_task(_send(self._ws, action[1])))
            self._sends = {task for task in self._sends if not task.done()}
        self._wake.set()
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def recv(self, timeout=None):
        """The next result; None once the connection is closed. Raises
        :class:`FalTimeoutError` after ``timeout`` seconds without one."""
        try:
            value = await asyncio.wait_for(self._results.get(), timeout)
        except TimeoutError:
            raise FalTimeoutError(f"no realtime result within {timeout} s") from None
        if value is _END:
            self._results.put_nowait(_END)
            return None
        return value

    def __aiter__(self):
        return self

    async def __anext__(self):
        value = await self.recv()
        if value is None:
            raise StopAsyncIteration
        return value

    async def close(self):
        """Close the socket (normal closure) and stop; safe to call twice."""
        self._core.closing = True
        self._wake.set()
        if self._supervisor is None:
            self._core.state = CLOSED
            self._results.put_nowait(_END)
            return
        await asyncio.gather(self._supervisor, return_exceptions=True)

    aclose = close

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def _send(ws, frame):
    try:
        await ws.send(frame)
    except (ConnectionClosed, OSError):
        pass  # the reader sees the broken socket and reports it


async def _call(callback, value):
    result = callback(value)
    if inspect.isawaitable(result):
        await result
