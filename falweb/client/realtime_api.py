"""``fal.realtime.connect`` for the sync client: a realtime session on ``websocket-client``
and threads. The session's rules (throttle, token refresh, reconnect, state) are
:mod:`falweb.client.realtime_core`; this module only does the I/O.

One supervisor thread per connection follows :meth:`RealtimeCore.next_action`; one reader
thread per open socket delivers results to ``on_result`` (and to the iterator form) and
errors to ``on_error``.
"""

import logging
import queue
import threading
import time

import websocket

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

__all__ = ["Realtime", "RealtimeConnection", "token_plan"]

_END = object()
RESULTS_KEPT = 100


class Realtime:
    """``client.realtime``."""

    def __init__(self, client):
        self._client = client

    def get_temporary_auth_token(self, endpoint_id, expiration=TOKEN_EXPIRATION_SECONDS):
        """A JWT for ``endpoint_id``'s app from ``POST {REST}/tokens/``."""
        return self._client.transport.run(token_plan(endpoint_id, expiration))

    def connect(self, endpoint_id, *, on_result=None, on_error=None, path="/realtime",
                max_buffering=None, token_provider=None, token_expiration=None,
                throttle_interval=0.128, reconnect=None, timeout=None):
        """A :class:`RealtimeConnection`; its socket opens on the first ``send``.

        ``on_result(output)`` gets each decoded result, ``on_error(ApiError)`` each error
        (default: logged); or iterate the connection for results. ``throttle_interval``
        (seconds, 0 off): at most one input per interval, the latest wins.
        ``token_provider(app_path)`` replaces the ``/tokens/`` call; ``token_expiration``
        (seconds) is the life asked for each token. ``reconnect``: the
        :class:`~falweb.client.RetryPolicy` of the waits between reconnects.
        ``max_buffering`` (1–60) is passed to fal's gateway. ``timeout``: seconds to open
        the socket.
        """
        core = RealtimeCore(endpoint_id, path=path, max_buffering=max_buffering,
                            throttle_interval=throttle_interval,
                            token_expiration=token_expiration, token_provider=token_provider,
                            reconnect=reconnect)
        return RealtimeConnection(self._client, core, on_result, on_error, timeout)


class RealtimeConnection:
    """A realtime session: ``send(input)``, ``close()``, ``state``; iterate it (or call
    ``recv()``) for results. Use it as a context manager."""

    def __init__(self, client, core, on_result, on_error, timeout):
        self._client = client
        self._core = core
        self.endpoint_id = core.endpoint_id
        self._on_result = on_result
        self._on_error = on_error
        self._timeout = timeout
        self._cond = threading.Condition()
        self._ws = None
        self._results = queue.Queue()
        self._supervisor = None

    @property
    def state(self):
        """``"idle"`` (nothing sent yet), ``"connecting"``, ``"open"`` or ``"closed"``."""
        return self._core.state

    def _url(self):
        """Fetch a token; the socket URL on this client's backend."""
        with self._cond:
            need = self._core.token is None
        if need:
            token = self._client.transport.run(self._core.token_plan())
            with self._cond:
                self._core.token_fetched(token, time.monotonic())
        return self._client.transport.hosts.resolve(self._core.url())

    # -- the supervisor ----------------------------------------------------------------------------

    def _supervise(self):
        try:
            while True:
                with self._cond:
                    action = self._core.next_action(time.monotonic(), self._ws is not None)
                    if action[0] == "wait":
                        self._cond.wait(action[1])
                        continue
                    if action[0] == "close":
                        break
                    if action[0] == "send":
                        self._send_frame(action[1])
                        continue
                if action[0] == "token":
                    self._refresh_token()
                else:
                    self._open()
        finally:
            with self._cond:
                ws, self._ws = self._ws, None
                self._core.state = CLOSED
            if ws is not None:
                _close_quietly(ws)
            self._results.put(_END)

    def _refresh_token(self):
        try:
            token = self._client.transport.run(self._core.token_plan())
        except FalError as exc:
            with self._cond:
                if self._ws is None:
                    self._core.lost(time.monotonic(), normal=False)
                else:
                    self._core.token_failed(time.monotonic())
            self._deliver_error(exc)
            return
        with self._cond:
            self._core.token_fetched(token, time.monotonic())

    def _open(self):
        with self._cond:
            url = self._client.transport.hosts.resolve(self._core.url())
        timeout = self._timeout or self._client.transport.timeout
        try:
            ws = websocket.create_connection(url, timeout=timeout, enable_multithread=True)
        except (OSError, websocket.WebSocketException) as exc:
            with self._cond:
                self._core.lost(time.monotonic(), normal=False)
            host = url.split("/")[2] if "//" in url else url[:60]
            self._deliver_error(FalConnectionError(
                f"Cannot open the realtime socket to {host}: {type(exc).__name__}", host=host))
            return
        ws.settimeout(None)
        with self._cond:
            if self._core.closing:
                _close_quietly(ws)
                return
            self._ws = ws
            self._core.opened()
        threading.Thread(target=self._read, args=(ws,), daemon=True,
                         name=f"fal-realtime-reader-{self.endpoint_id}").start()

    def _send_frame(self, frame):
        # Called holding the lock; websocket-client sends from any thread (multithread).
        try:
            self._ws.send_binary(frame)
        except (OSError, websocket.WebSocketException):
            pass  # the reader sees the broken socket and reports it

    # -- the reader ------------------------------------------------------------------------------

    def _read(self, ws):
        normal, unauthorized = False, False
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=False)
            except (OSError, websocket.WebSocketException) as exc:
                with self._cond:
                    ours = self._ws is ws and not self._core.closing
                if ours:
                    self._deliver_error(ApiError(f"Error closing the connection: {exc}", 500))
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                normal = code in (1000, 1005)
                if not normal and not unauthorized:
                    reason = data[2:].decode("utf-8", "replace")
                    self._deliver_error(ApiError(f"Error closing the connection: {reason}",
                                                 code))
                break
            kind = self._handle(data if opcode == websocket.ABNF.OPCODE_BINARY
                                else data.decode("utf-8", "replace"))
            unauthorized = unauthorized or kind == "unauthorized"
        _close_quietly(ws)
        with self._cond:
            if self._ws is ws:
                self._ws = None
                self._core.lost(time.monotonic(), normal=normal, unauthorized=unauthorized)
            self._cond.notify_all()

    def _handle(self, data):
        found = route(data)
        if found is None:
            return None
        kind, value = found
        if kind == "result":
            if self._results.qsize() >= RESULTS_KEPT:
                self._results.get_nowait()  # nobody iterates: keep the newest only
            self._results.put(value)
            if self._on_result is not None:
                try:
                    self._on_result(value)
                except Exception:  # a callback's bug must not kill the reader
                    log.exception("realtime on_result callback failed")
        else:
            self._deliver_error(value)
        return kind

    def _deliver_error(self, error):
        if self._on_error is None:
            log.warning("realtime error: %s", error)
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("realtime on_error callback failed")

    # -- the caller's side -----------------------------------------------------------------------

    def send(self, input):
        """Send one input (msgpack binary frame; ``bytes`` as given). Throttled: within one
        ``throttle_interval`` only the latest input is sent. Raises :class:`FalError` after
        ``close()``."""
        with self._cond:
            if self._core.closing:
                raise FalError("the realtime connection is closed")
            self._core.offer(input)
            # Leading edge: with the socket open and the window free, it goes now, from
            # the caller's thread, before a next send() could replace it.
            action = self._core.next_action(time.monotonic(), self._ws is not None)
            if action[0] == "send":
                self._send_frame(action[1])
            self._cond.notify_all()
            if self._supervisor is None:
                self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                                    name=f"fal-realtime-{self.endpoint_id}")
                self._supervisor.start()

    def recv(self, timeout=None):
        """The next result; None once the connection is closed. Raises
        :class:`FalTimeoutError` after ``timeout`` seconds without one."""
        try:
            value = self._results.get(timeout=timeout)
        except queue.Empty:
            raise FalTimeoutError(f"no realtime result within {timeout} s") from None
        if value is _END:
            self._results.put(_END)  # every later recv sees the end too
            return None
        return value

    def __iter__(self):
        while True:
            value = self.recv()
            if value is None:
                return
            yield value

    def close(self):
        """Close the socket (normal closure) and stop; safe to call twice."""
        with self._cond:
            self._core.closing = True
            self._cond.notify_all()
            supervisor = self._supervisor
            if supervisor is None:
                self._core.state = CLOSED
                self._results.put(_END)
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _close_quietly(ws):
    try:
        ws.close()
    except (OSError, websocket.WebSocketException):
        pass
    # close() does nothing once websocket-client saw the peer go; the socket is still ours.
    ws.shutdown()
