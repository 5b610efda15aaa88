"""A realtime session's rules, without its socket: one definition for the sync and the async
realtime connection (fal-protocol §8; the JS client's behaviour).

- **Throttle, latest wins.** ``send`` keeps only the newest input; it goes out at most once
  per ``throttle_interval`` (leading edge: the first input of a quiet spell goes at once).
  While the socket is not open the newest input waits, and is sent when it opens.
- **Token.** Fetched before connecting and refreshed in the background at 90 % of its life
  (read from the token's own ``exp`` when it has one, so a server that rounds its clock
  cannot make us late); a failed refresh is tried again after 5 % of the life. A token the
  server refuses is dropped and a new one fetched for the next try.
- **Reconnect.** A connection lost without a normal close is reopened after a backoff
  (:class:`~falweb.client.retry.RetryPolicy`), until ``close()``. After a normal close by
  the server (fal's idle ``TIMEOUT``) the session reopens lazily, on the next ``send``.
- **State.** ``idle`` until the first ``send`` (the socket opens lazily, as in fal's JS
  client), then ``connecting``, ``open``, and ``closed`` after ``close()``.

The driver asks :meth:`RealtimeCore.next_action` what to do, does it, and reports back.
"""

import base64
import json
import time
from urllib.parse import urlencode

import msgpack

from falweb.client.effects import Call
from falweb.client.endpoints import normalize_endpoint_id
from falweb.client.endpoints import parse_endpoint_id
from falweb.client.errors import ApiError
from falweb.client.retry import RetryPolicy
from falweb.hosts import REALTIME_URL
from falweb.hosts import REST_URL

TOKEN_EXPIRATION_SECONDS = 120
THROTTLE_INTERVAL = 0.128
REFRESH_AT = 0.9
REFRESH_RETRY = 0.05
# Reconnect quickly at first (a dropped socket is usually back at once), then back off.
RECONNECT = RetryPolicy(max_retries=10**9, base_delay=0.1, max_delay=5.0)

IDLE = "idle"
CONNECTING = "connecting"
OPEN = "open"
CLOSED = "closed"

_NOTHING = object()


def token_from(body):
    """The token in a ``/tokens/`` answer: fal answers a JSON string; old proxies wrap it in
    ``{"detail"}``, fal's Python client reads ``{"token"}``."""
    if isinstance(body, str):
        return body.strip().strip('"')
    if isinstance(body, dict):
        return body.get("token") or body.get("detail")
    return None


def token_plan(endpoint_id, expiration=None):
    """A plan: a JWT for ``endpoint_id``'s app from ``POST {REST}/tokens/`` (fal-protocol
    §8.2), through the proxy when there is one."""
    alias = parse_endpoint_id(normalize_endpoint_id(endpoint_id)).alias
    answer = yield Call("POST", f"{REST_URL}/tokens/", input={
        "allowed_apps": [alias],
        "token_expiration": int(expiration or TOKEN_EXPIRATION_SECONDS)})
    token = token_from(answer.body)
    if not token:
        raise ApiError("the token endpoint answered without a token", 200, answer.body)
    return token


def token_lifetime(token, asked, now_wall=None):
    """Seconds the token lives: its ``exp`` claim when it has one (not verified: we only
    schedule by it), else what was asked."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        left = float(claims["exp"]) - (time.time() if now_wall is None else now_wall)
        return max(0.0, min(float(asked), left))
    except (IndexError, KeyError, TypeError, ValueError):
        return float(asked)


def decode(data):
    """A frame's message: msgpack for binary frames, JSON for text ones. Raises
    :class:`ApiError` (400) when it is neither."""
    try:
        if isinstance(data, bytes | bytearray):
            return msgpack.unpackb(data, raw=False)
        return json.loads(data)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise ApiError("Could not decode a realtime message", 400) from None


def classify(message):
    """``("result", output)``, ``("error", ApiError)``, ``("unauthorized", ApiError)`` or
    None (fal's meta messages and idle TIMEOUT, which the JS client drops)."""
    if isinstance(message, dict):
        if message.get("status") == "error" and message.get("error") == "Unauthorized":
            return "unauthorized", ApiError("Unauthorized", 401, message)
        kind = message.get("type")
        if kind == "x-fal-error":
            if message.get("error") == "TIMEOUT":
                return None
            return "error", ApiError(f"{message.get('error')}: {message.get('reason')}", 400,
                                     message)
        if kind == "x-fal-message" or message.get("status") == "error":
            return None
    return "result", message


def route(data):
    """Where a frame goes: :func:`classify` of its decoded message, a decode failure being
    an ``("error", ApiError)``."""
    try:
        return classify(decode(data))
    except ApiError as error:
        return "error", error


def encode(input):
    """An input's frame: ``bytes`` as given, anything else msgpack (a binary frame)."""
    if isinstance(input, bytes | bytearray):
        return bytes(input)
    return msgpack.packb(input, use_bin_type=True)


class RealtimeCore:
    """The state of one realtime session and its next step; no I/O, no locks (the driver
    holds its own)."""

    def __init__(self, endpoint_id, *, path="/realtime", max_buffering=None,
                 throttle_interval=THROTTLE_INTERVAL, token_expiration=None,
                 token_provider=None, reconnect=None):
        if max_buffering is not None and not 1 <= int(max_buffering) <= 60:
            raise ValueError("The `max_buffering` must be between 1 and 60 (inclusive)")
        if throttle_interval is not None and float(throttle_interval) < 0:
            raise ValueError("throttle_interval must be 0 (off) or more seconds")
        self.endpoint_id = normalize_endpoint_id(endpoint_id)
        suffix = "/" + path.lstrip("/") if path else ""
        self.path = "" if self.endpoint_id.endswith(suffix) else suffix
        self.max_buffering = max_buffering
        self.throttle_interval = float(throttle_interval or 0)
        self.token_expiration = token_expiration
        self.token_provider = token_provider
        self.reconnect = reconnect or RECONNECT
        self.state = IDLE
        self.token = None
        self.refresh_at = 0.0
        self.pending = _NOTHING
        self.last_sent = float("-inf")
        self.attempt = 0
        self.reconnect_at = 0.0
        self.wanted = True  # reconnect without waiting for a send
        self.closing = False

    @property
    def app_path(self):
        """What a ``token_provider`` is given: ``owner/alias[/path]/realtime``."""
        return f"{self.endpoint_id}{self.path}"

    def token_plan(self):
        """A plan fetching a token (from ``token_provider`` when given)."""
        if self.token_provider is not None:
            from falweb.client.effects import Notify

            return (yield Notify(self.token_provider, (self.app_path,)))
        return (yield from token_plan(self.endpoint_id, self.token_expiration))

    def url(self):
        """The canonical ``wss://fal.run/...`` URL with the current token."""
        query = {"fal_jwt_token": self.token}
        if self.max_buffering is not None:
            query["max_buffering"] = str(int(self.max_buffering))
        return f"{REALTIME_URL}/{self.endpoint_id}{self.path}?{urlencode(query)}"

    # -- what the driver reports ---------------------------------------------------------------

    def token_fetched(self, token, now):
        asked = self.token_expiration or TOKEN_EXPIRATION_SECONDS
        self.token = token
        if self.token_provider is not None and not self.token_expiration:
            self.refresh_at = float("inf")  # a provider without a lifetime: never refreshed
        else:
            self.refresh_at = now + REFRESH_AT * token_lifetime(token, asked)

    def token_failed(self, now):
        asked = self.token_expiration or TOKEN_EXPIRATION_SECONDS
        self.refresh_at = now + REFRESH_RETRY * asked

    def opened(self):
        self.state = OPEN
        self.attempt = 0

    def lost(self, now, *, normal, unauthorized=False):
        """The socket closed (``normal``: a 1000 close from the server); returns the
        seconds before the next try."""
        if unauthorized:
            self.token = None
        if self.closing:
            self.state = CLOSED
            return 0.0
        self.state = CONNECTING
        if normal and self.pending is _NOTHING:
            self.wanted = False
            return 0.0
        delay = self.reconnect.delay(self.attempt)
        self.attempt += 1
        self.reconnect_at = now + delay
        return delay

    def offer(self, input):
        """A new input: it replaces any that is still waiting."""
        self.pending = input
        self.wanted = True
        if self.state == IDLE:
            self.state = CONNECTING

    def take(self, now):
        payload, self.pending = self.pending, _NOTHING
        self.last_sent = now
        return encode(payload)

    # -- what the driver does next ---------------------------------------------------------------

    def next_action(self, now, connected):
        """``("close",)``, ``("token",)``, ``("connect",)``, ``("send", frame)`` or
        ``("wait", seconds or None)``."""
        if self.closing:
            return ("close",)
        if not connected:
            if not self.wanted:
                return ("wait", None)
            if now < self.reconnect_at:
                return ("wait", self.reconnect_at - now)
            if self.token is None or now >= self.refresh_at:
                return ("token",)
            return ("connect",)
        waits = [self.refresh_at - now]
        if self.pending is not _NOTHING:
            free_at = self.last_sent + self.throttle_interval
            if now >= free_at:
                return ("send", self.take(now))
            waits.append(free_at - now)
        if now >= self.refresh_at:
            return ("token",)
        wait = min(waits)
        return ("wait", None if wait == float("inf") else max(0.0, wait))
