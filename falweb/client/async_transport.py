"""The async client's transport: :class:`~falweb.client.envelope.Envelope` over ``httpx``
(one ``AsyncClient`` per client), the ``perform`` that runs the client's plans with
``await``, and :class:`AsyncFalStream`."""

import asyncio

import httpx

from falweb.client import effects
from falweb.client.answers import error_from_response
from falweb.client.answers import is_success
from falweb.client.answers import read_response
from falweb.client.envelope import Envelope
from falweb.client.errors import FalConnectionError
from falweb.client.errors import FalTimeoutError
from falweb.client.retry import NO_RETRY
from falweb.client.storage_api import remaining_size
from falweb.client.streaming import SSEDecoder
from falweb.client.streaming import StreamBase
from falweb.client.streaming import parse_event

_FILE_CHUNK = 1024 * 1024


class AsyncTransport(Envelope):
    """Sends fal requests for one :class:`~falweb.client.AsyncClient`; use it from one
    event loop. ``http``: an ``httpx.AsyncClient`` to use (default: a new one, closed by
    :meth:`aclose`)."""

    def __init__(self, *, http=None, **settings):
        super().__init__(**settings)
        self.http = http or httpx.AsyncClient(follow_redirects=False)

    async def aclose(self):
        await self.http.aclose()

    def _timeout(self, timeout, deadline):
        connect, total = self.timeouts(timeout, deadline)
        return httpx.Timeout(total, connect=connect)

    async def dispatch(self, method, url, *, input=None, headers=None, retry=NO_RETRY,
                       stream=False, timeout=None, deadline=None, accept="application/json"):
        """Send a fal request to canonical ``url``; return the ``httpx.Response`` (its body
        read unless ``stream``). Error statuses are returned, not raised. Retries as the
        sync :meth:`~falweb.client.transport.Transport.dispatch`."""
        method, target, request_headers, body = self.prepare(method, url, input, headers,
                                                             accept)
        attempt = 0
        while True:
            request = self.http.build_request(method, target, headers=request_headers,
                                              content=body,
                                              timeout=self._timeout(timeout, deadline))
            try:
                response = await self.http.send(request, stream=stream)
            except httpx.TransportError as exc:
                wait = self.wait_after_error(exc, isinstance(exc, httpx.ReadTimeout), method,
                                             target, retry, attempt, deadline)
                if isinstance(wait, Exception):
                    raise wait from None
            else:
                wait = self.wait_after_status(response, retry, attempt, deadline)
                if wait is None:
                    return response
                await response.aclose()
            await asyncio.sleep(wait)
            attempt += 1

    async def _send_direct(self, call, stream=False):
        method, target, headers, body = self.prepare_direct(call)
        if body is not None and hasattr(body, "read"):
            # A length, so the upload is not chunked: signed storage URLs may refuse that.
            size = remaining_size(body)
            if size is not None:
                headers["Content-Length"] = str(size)
            body = _file_chunks(body)
        request = self.http.build_request(method, target, headers=headers, content=body,
                                          timeout=self._timeout(call.timeout, call.deadline))
        try:
            return await self.http.send(request, stream=stream)
        except httpx.TransportError as exc:
            error = self.wait_after_error(exc, isinstance(exc, httpx.ReadTimeout), method,
                                          target, NO_RETRY, 0, None)
            raise error from None

    async def _send(self, call, stream=False):
        if call.direct:
            return await self._send_direct(call, stream)
        return await self.dispatch(
            call.method, call.url, input=call.input, headers=call.headers,
            retry=self.retry if call.retry else NO_RETRY, stream=stream,
            timeout=call.timeout, deadline=call.deadline, accept=call.accept)

    async def call(self, call):
        """Send one :class:`~falweb.client.effects.Call`; return its ``Answer``."""
        response = await self._send(call)
        return effects.Answer(read_response(response), response.headers,
                              response.status_code)

    async def open_stream(self, call):
        """Open ``call`` as an :class:`AsyncFalStream`; raises the error the backend
        answered."""
        response = await self._send(call, stream=True)
        if not is_success(response):
            try:
                await response.aread()
                raise error_from_response(response)
            finally:
                await response.aclose()
        return AsyncFalStream(response, deadline=call.deadline)

    async def perform(self, effect):
        """Do one effect of a plan."""
        kind = type(effect)
        if kind is effects.Call:
            return await self.call(effect)
        if kind is effects.Sleep:
            await asyncio.sleep(max(0.0, effect.seconds))
            return None
        if kind is effects.NextEvent:
            return await anext(effect.stream, effects.END)
        if kind is effects.Notify:
            return await effects.notify_async(effect)
        if kind is effects.OpenStream:
            return await self.open_stream(effect.call)
        raise TypeError(f"unknown effect {effect!r}")

    def run(self, plan):
        """A coroutine running the plan to its end."""
        return effects.drive_async(plan, self.perform)


async def _file_chunks(file):
    # httpx's async client takes async iterables only; reading a local file part by part
    # keeps memory flat (each read is a memory copy, short next to the network).
    while True:
        chunk = file.read(_FILE_CHUNK)
        if not chunk:
            return
        yield chunk


class AsyncFalStream(StreamBase):
    """:class:`~falweb.client.FalStream` for the async client: ``async for event in
    stream``, ``await stream.done()``, ``await stream.aclose()``, ``async with``."""

    def _check_deadline(self):
        if self._past_deadline():
            raise FalTimeoutError("the event stream passed its deadline")

    async def _generate(self):
        try:
            if not self.is_sse:
                async for chunk in self.response.aiter_raw():
                    yield chunk
                return
            decoder = SSEDecoder()
            async for chunk in self.response.aiter_raw():
                self._check_deadline()
                for data in decoder.feed(chunk):
                    yield parse_event(data, self.response.status_code, self.request_id)
            for data in decoder.close():
                yield parse_event(data, self.response.status_code, self.request_id)
        except httpx.TransportError as exc:
            self._check_deadline()
            raise FalConnectionError(f"the event stream broke: {type(exc).__name__}") from None
        finally:
            await self.response.aclose()

    def __aiter__(self):
        return self

    async def __anext__(self):
        event = await anext(self._events)
        self._last = event
        return event

    async def done(self):
        """Read the stream to its end and return the last event (None if there was none)."""
        async for _ in self:
            pass
        return self._last

    async def aclose(self):
        """Stop reading and release the connection."""
        await self._events.aclose()
        await self.response.aclose()

    close = abort = aclose

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
