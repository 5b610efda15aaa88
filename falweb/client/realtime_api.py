"""``fal.realtime.connect``: a WebSocket session with a realtime endpoint (fal-protocol §8).

Minimal but faithful: a short-lived token from ``/tokens/`` (scoped to the app's alias),
``wss://fal.run/{id}/realtime?fal_jwt_token=…``, msgpack binary frames both ways, JSON text
frames for fal's messages and errors. The socket opens lazily on the first ``send`` and
reopens on the next ``send`` after it closed. Results and errors are delivered to the
callbacks from a reader thread.
"""

import json
import logging
import threading
from urllib.parse import urlencode

import msgpack
import websocket

from falweb.client.endpoints import normalize_endpoint_id
from falweb.client.endpoints import parse_endpoint_id
from falweb.client.errors import ApiError
from falweb.client.errors import FalConnectionError
from falweb.hosts import REALTIME_URL
from falweb.hosts import REST_URL

log = logging.getLogger(__name__)

TOKEN_EXPIRATION_SECONDS = 120


def _token_from(body):
    # fal answers a JSON string; old proxies wrap it in {"detail"}, Python's reads {"token"}.
    if isinstance(body, str):
        return body.strip().strip('"')
    if isinstance(body, dict):
        return body.get("token") or body.get("detail")
    return None


class Realtime:
    """``client.realtime``."""

    def __init__(self, client):
        self._client = client

    def get_temporary_auth_token(self, endpoint_id, expiration=TOKEN_EXPIRATION_SECONDS):
        """A JWT for ``endpoint_id``'s app from ``POST {REST}/tokens/``."""
        alias = parse_endpoint_id(normalize_endpoint_id(endpoint_id)).alias
        body, _ = self._client.transport.request(
            "POST", f"{REST_URL}/tokens/",
            input={"allowed_apps": [alias], "token_expiration": expiration},
        )
        token = _token_from(body)
        if not token:
            raise ApiError("the token endpoint answered without a token", 200, body)
        return token

    def connect(self, endpoint_id, *, on_result, on_error=None, path="/realtime",
                max_buffering=None, token_provider=None, timeout=None):
        """A :class:`RealtimeConnection` (nothing is opened until the first ``send``).

        ``on_result(output)`` gets each decoded result; ``on_error(ApiError)`` each error
        (default: logged). ``token_provider(app_path)`` replaces the ``/tokens/`` call.
        ``max_buffering`` (1–60) is passed to fal's gateway.
        """
        if max_buffering is not None and not 1 <= int(max_buffering) <= 60:
            raise ValueError("The `max_buffering` must be between 1 and 60 (inclusive)")
        return RealtimeConnection(self, normalize_endpoint_id(endpoint_id), on_result,
                                  on_error, path, max_buffering, token_provider, timeout)


class RealtimeConnection:
    """An open (or lazily opening) realtime session; ``send(input)``, ``close()``."""

    def __init__(self, realtime, endpoint_id, on_result, on_error, path, max_buffering,
                 token_provider, timeout):
        self._realtime = realtime
        self.endpoint_id = endpoint_id
        self._on_result = on_result
        self._on_error = on_error or (lambda error: log.warning("realtime error: %s", error))
        suffix = "/" + path.lstrip("/") if path else ""
        self._path = "" if endpoint_id.endswith(suffix) else suffix
        self._max_buffering = max_buffering
        self._token_provider = token_provider
        self._timeout = timeout
        self._lock = threading.Lock()
        self._ws = None
        self._reader = None

    def _url(self):
        if self._token_provider is not None:
            token = self._token_provider(f"{self.endpoint_id}{self._path}")
        else:
            token = self._realtime.get_temporary_auth_token(self.endpoint_id)
        query = {"fal_jwt_token": token}
        if self._max_buffering is not None:
            query["max_buffering"] = str(int(self._max_buffering))
        canonical = f"{REALTIME_URL}/{self.endpoint_id}{self._path}?{urlencode(query)}"
        return self._realtime._client.transport.hosts.resolve(canonical)

    def _open(self):
        url = self._url()
        timeout = self._timeout or self._realtime._client.transport.timeout
        try:
            ws = websocket.create_connection(url, timeout=timeout, enable_multithread=True)
        except (OSError, websocket.WebSocketException) as exc:
            host = url.split("/")[2] if "//" in url else url[:60]
            raise FalConnectionError(f"Cannot open the realtime socket to {host}: "
                                     f"{type(exc).__name__}", host=host) from None
        ws.settimeout(None)
        self._ws = ws
        self._reader = threading.Thread(target=self._read, args=(ws,), daemon=True,
                                        name=f"fal-realtime-{self.endpoint_id}")
        self._reader.start()

    def send(self, input):
        """Send one input (msgpack binary frame; ``bytes`` are sent as given)."""
        payload = input if isinstance(input, bytes | bytearray) else \
            msgpack.packb(input, use_bin_type=True)
        with self._lock:
            if self._ws is None or not self._ws.connected:
                self._open()
            self._ws.send_binary(bytes(payload))

    def _read(self, ws):
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=False)
            except websocket.WebSocketConnectionClosedException:
                break
            except (OSError, websocket.WebSocketException) as exc:
                # close() drops the socket before closing it: an error after that is ours.
                with self._lock:
                    closed_by_us = self._ws is not ws
                if not closed_by_us:
                    self._deliver_error(ApiError(f"Error closing the connection: {exc}", 500))
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                if code not in (1000, 1005):
                    reason = data[2:].decode("utf-8", "replace")
                    self._deliver_error(ApiError(f"Error closing the connection: {reason}",
                                                 code))
                break
            self._handle(opcode, data)
        with self._lock:
            if self._ws is ws:
                self._ws = None

    def _handle(self, opcode, data):
        try:
            if opcode == websocket.ABNF.OPCODE_BINARY:
                message = msgpack.unpackb(data, raw=False)
            else:
                message = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            self._deliver_error(ApiError("Could not decode a realtime message", 400))
            return
        if isinstance(message, dict):
            if message.get("status") == "error" and message.get("error") == "Unauthorized":
                self._deliver_error(ApiError("Unauthorized", 401, message))
                return
            kind = message.get("type")
            if kind == "x-fal-error":
                if message.get("error") != "TIMEOUT":
                    self._deliver_error(ApiError(
                        f"{message.get('error')}: {message.get('reason')}", 400, message))
                return
            if kind == "x-fal-message" or message.get("status") == "error":
                return
        try:
            self._on_result(message)
        except Exception:  # a callback's bug must not kill the reader
            log.exception("realtime on_result callback failed")

    def _deliver_error(self, error):
        try:
            self._on_error(error)
        except Exception:
            log.exception("realtime on_error callback failed")

    def close(self):
        """Close the socket (normal closure) and wait for the reader to stop."""
        with self._lock:
            ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except (OSError, websocket.WebSocketException):
                pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
