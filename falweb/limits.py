"""Rate limits and daily caps on what costs money or compute: submits, proxy calls, uploads
and live-mode frames, counted per user and per client address.

Four kinds, each a ``FALWEB_LIMIT_*`` setting in the ``limits`` notation
(``"30/minute;1000/day"``; ``""`` = no limit):

- ``submits``: form submits and re-runs on the pages; queue submits and ``fal.run`` calls
  through the proxy;
- ``proxy``: every call through the proxy (status polls included);
- ``uploads``: files chosen in forms; storage ``initiate`` calls through the proxy;
- ``live_frames``: inputs a browser sends over a live-mode websocket.

Each is counted twice, against the user (:func:`falweb.auth.current_user`) and against the
client address (an IPv6 address by its /64); either over its limit is refused. In the
``none`` auth mode every caller is the same user, so there the address alone counts, and a
person on their own machine (a loopback caller) gets :data:`OWN_MACHINE_DEFAULTS` for every
setting left at its default.

Refusals are 429 with ``Retry-After``: fal's ``{"detail": "Rate limit exceeded: 30 per 1
minute"}`` from the proxy, the form or request page with the message on the pages, and
``{"type": "error", "error": "rate_limited", "retry_after": N}`` over a live socket (which
stays open).

Flask-Limiter is the extension (its ``Limiter`` holds the storage and the fixed-window
strategy, and is there for anyone who wants to decorate more routes); the checks here call
its strategy where the rule depends on what a request carries: which fal URL a proxy call
names, how many files a form holds, each frame of a socket. Counters live in
``FALWEB_LIMITS_STORAGE_URL``: by default ``limits.sqlite`` in the instance folder
(:mod:`falweb.limits_storage`), which every gunicorn worker shares. When the storage fails,
each process counts in memory until it works again (logged), rather than refusing everyone.
"""

import ipaddress
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from flask_limiter import Limiter
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from falweb import auth
from falweb import config as settings
from falweb import limits_storage
from falweb.hosts import QUEUE_URL
from falweb.hosts import REST_ALPHA_URL
from falweb.hosts import REST_URL
from falweb.hosts import RUN_URL
from falweb.hosts import hostname

log = logging.getLogger("falweb.limits")

#: The setting of each kind.
KINDS = {
    "submits": "FALWEB_LIMIT_SUBMITS",
    "proxy": "FALWEB_LIMIT_PROXY",
    "uploads": "FALWEB_LIMIT_UPLOADS",
    "live_frames": "FALWEB_LIMIT_LIVE_FRAMES",
}

#: On one's own machine (auth mode ``none``, a loopback caller), what a setting left at its
#: default becomes: still a brake on a runaway script, never on a person.
OWN_MACHINE_DEFAULTS = {
    "submits": "600/minute",
    "proxy": "6000/minute",
    "uploads": "600/minute",
    "live_frames": "100/second",
}

DB_NAME = "limits.sqlite"
KEY_PREFIX = "falweb"
# A failing storage is logged at most this often (per process).
_STORAGE_WARNING_SECONDS = 60.0

_QUEUE_HOST = hostname(QUEUE_URL)
_RUN_HOST = hostname(RUN_URL)
_REST_HOSTS = (hostname(REST_URL), hostname(REST_ALPHA_URL))
_FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-Ip")


@dataclass(frozen=True)
class Refusal:
    """A limit that refused a request: ``limit`` (a ``limits`` item), ``retry_after``
    (whole seconds until its window ends) and ``key`` (``user:<name>`` or
    ``address:<ip>``)."""

    limit: object
    retry_after: int
    key: str

    @property
    def detail(self):
        """fal's words: ``Rate limit exceeded: 30 per 1 minute``."""
        return f"Rate limit exceeded: {self.limit}"

    @property
    def message(self):
        """The detail and when to try again, for a person."""
        return f"{self.detail}. Try again in {_duration(self.retry_after)}."


@dataclass(frozen=True)
class Caller:
    """Whom a request is counted against: its keys, and whether it comes from the machine
    the app runs on in the ``none`` auth mode (generous defaults)."""

    keys: tuple
    own_machine: bool


class _Limits:
    """The app's limits: the Flask-Limiter extension, the parsed settings, the fallback."""

    def __init__(self, app):
        config = app.config
        self.enabled = bool(config["FALWEB_LIMITS_ENABLED"])
        self.rules = {kind: _parse(key, config[key]) for kind, key in KINDS.items()}
        self.own_machine_rules = {
            kind: _parse(key, OWN_MACHINE_DEFAULTS[kind]
                         if config[key] == settings.DEFAULTS[key] else config[key])
            for kind, key in KINDS.items()
        }
        self.storage_url = storage_url(app)
        self.limiter = Limiter(
            client_address,
            storage_uri=self.storage_url,
            strategy="fixed-window",
            key_prefix=KEY_PREFIX,
            # A storage that fails must not fail every request (its own decorated limits).
            swallow_errors=True,
            enabled=self.enabled,
        )
        self.limiter.init_app(app)
        self._fallback = None
        self._fallback_lock = threading.Lock()
        self._warned = 0.0

    def strategy(self):
        return self.limiter.limiter

    def fallback(self):
        # Counting in this process only, while the shared storage is failing.
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = FixedWindowRateLimiter(MemoryStorage())
            return self._fallback

    def storage_failed(self, exc):
        now = time.monotonic()
        if now - self._warned > _STORAGE_WARNING_SECONDS:
            self._warned = now
            log.warning("rate-limit storage failed (%s: %s); counting in this process "
                        "until it works again", type(exc).__name__, exc)

    def rules_for(self, kind, caller):
        return (self.own_machine_rules if caller.own_machine else self.rules)[kind]

    def apply(self, kind, caller, cost, consume):
        """The first limit of ``kind`` that refuses ``caller``, or None. ``consume``: count
        this request (``hit``) or only look."""
        rules = self.rules_for(kind, caller)
        if not rules:
            return None
        for key in caller.keys:
            for item in rules:  # shortest window first, as Flask-Limiter checks them
                ids = (KEY_PREFIX, kind, key)
                try:
                    strategy = self.strategy()
                    allowed = (strategy.hit if consume else strategy.test)(item, *ids, cost=cost)
                except Exception as exc:  # noqa: BLE001 - any storage's errors
                    self.storage_failed(exc)
                    strategy = self.fallback()
                    allowed = (strategy.hit if consume else strategy.test)(item, *ids, cost=cost)
                if not allowed:
                    return Refusal(item, _retry_after(strategy, item, ids), key)
        return None


def init_app(app):
    """Parse the ``FALWEB_LIMIT_*`` settings, open the storage, and add ``Retry-After`` to
    the app's 429 answers.

    :raise ValueError: a setting is not in the ``limits`` notation (named in the message).
    """
    app.extensions["falweb_limits"] = _Limits(app)
    app.after_request(_retry_after_header)


def storage_url(app):
    """``FALWEB_LIMITS_STORAGE_URL``, or the SQLite file in the instance folder; a relative
    ``sqlite:///`` path is taken inside the instance folder."""
    url = (app.config["FALWEB_LIMITS_STORAGE_URL"] or "").strip()
    if not url:
        return "sqlite:///" + os.path.join(app.instance_path, DB_NAME)
    if url.startswith("sqlite:///"):
        path = limits_storage.path_of(url)
        if not os.path.isabs(path):
            return "sqlite:///" + os.path.join(app.instance_path, path)
    return url


def limiter(app=None):
    """The app's Flask-Limiter :class:`~flask_limiter.Limiter` (to decorate more routes)."""
    return (app or current_app).extensions["falweb_limits"].limiter


def _parse(key, value):
    value = (value or "").strip() if isinstance(value, str) else value
    if not value:
        return []
    try:
        return sorted(parse_many(value))
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not a rate limit such as "
                         f"'30/minute;1000/day' (or empty for none)") from None


def _retry_after(strategy, item, ids):
    try:
        reset = strategy.get_window_stats(item, *ids).reset_time
    except Exception:  # noqa: BLE001 - the storage failed between two calls
        reset = time.time() + item.get_expiry()
    return max(1, math.ceil(reset - time.time()))


def _duration(seconds):
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 2 * 3600:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{math.ceil(seconds / 3600)} hours"


# -- who is asking -------------------------------------------------------------------------


def _ip(text):
    try:
        return ipaddress.ip_address(str(text).strip().strip("[]").split("%")[0])
    except ValueError:
        return None


def client_address():
    """The address of the current request's client: the peer, or, when the peer is one of
    ``FALWEB_TRUSTED_PROXIES``, the last address in ``X-Forwarded-For`` that is not. An IPv6
    address stands for its /64 (one host holds a whole /64); anything unreadable stands for
    itself, cut to 64 characters."""
    peer = request.remote_addr or ""
    proxies = current_app.extensions["falweb_auth"]["proxies"]
    if proxies and _trusted(peer, proxies):
        forwarded = [part.strip() for header in request.headers.getlist("X-Forwarded-For")
                     for part in header.split(",") if part.strip()]
        for candidate in reversed(forwarded):
            peer = candidate
            if not _trusted(candidate, proxies):
                break
    address = _ip(peer)
    if address is None:
        return peer[:64] or "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _trusted(text, networks):
    address = _ip(text)
    return address is not None and any(address in network for network in networks)


def caller():
    """The :class:`Caller` of the current request (the gate has found its user)."""
    address = client_address()
    user = auth.current_user()
    mode = g.get("auth_mode")
    keys = []
    if user is not None and mode != "none":
        keys.append(f"user:{user['name']}")
    keys.append(f"address:{address}")
    peer = _ip(request.remote_addr)
    own_machine = (mode == "none" and peer is not None and peer.is_loopback
                   and not any(request.headers.get(name) for name in _FORWARDING_HEADERS))
    return Caller(tuple(keys), own_machine)


# -- checks --------------------------------------------------------------------------------


def _check(kind, cost, who, consume):
    state = current_app.extensions.get("falweb_limits")
    if state is None or not state.enabled:
        return None
    refusal = state.apply(kind, who or caller(), cost, consume)
    if refusal is not None:
        if consume:
            log.info("rate limit %s exceeded: %s by %s", refusal.limit, kind, refusal.key)
        g.rate_limit_refusal = refusal  # for the Retry-After of the page that says so
    return refusal


def hit(kind, cost=1, who=None):
    """Count one ``kind`` (``submits``, ``proxy``, ``uploads``, ``live_frames``) against the
    current request's user and address (or ``who``, a :class:`Caller`); returns the
    :class:`Refusal` when a limit refuses it, else None."""
    return _check(kind, cost, who, consume=True)


def would_refuse(kind, cost=1, who=None):
    """Like :func:`hit`, without counting: the refusal ``kind`` would get now, or None."""
    return _check(kind, cost, who, consume=False)


def proxy_kinds(method, target_url):
    """What a proxy call to ``target_url`` counts as: always ``proxy``; also ``submits``
    for a queue submit or a ``fal.run`` call, ``uploads`` for a storage initiate."""
    parts = urlsplit(target_url)
    host, path = parts.hostname, parts.path
    kinds = ["proxy"]
    if method == "POST":
        if host == _RUN_HOST or (host == _QUEUE_HOST and "/requests/" not in path):
            kinds.append("submits")
        elif host in _REST_HOSTS and path.startswith("/storage/upload/initiate"):
            kinds.append("uploads")
    return kinds


def check_proxy_call(method, target_url):
    """The 429 answer for a proxy call over a limit (fal's JSON shape), or None."""
    for kind in proxy_kinds(method, target_url):
        refusal = hit(kind)
        if refusal is not None:
            return json_response(refusal)
    return None


def json_response(refusal):
    """fal's 429: ``{"detail": "Rate limit exceeded: …"}`` with ``Retry-After``."""
    response = jsonify({"detail": refusal.detail})
    response.status_code = 429
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def live_message(refusal):
    """The message a live socket gets for a refused input (the socket stays open)."""
    return {"type": "error", "error": "rate_limited", "retry_after": refusal.retry_after,
            "reason": refusal.message}


def page_error(refusal):
    """What the pages show of a refusal, in the shape of their upstream errors."""
    return {"status": 429, "detail": refusal.message}


def _retry_after_header(response):
    refusal = g.get("rate_limit_refusal")
    if refusal is not None and response.status_code == 429 \
            and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response
