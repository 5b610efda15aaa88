"""The credential proxy: fal's official JavaScript clients reach fal through it with ``proxyUrl``.

A browser (or any JS client configured with ``proxyUrl``) sends every fal call to one route,
``/api/fal/proxy`` by default, with the real fal URL in the ``x-fal-target-url`` header. The
proxy checks that URL against fal's hosts and an allowlist, adds ``Authorization: Key <FAL_KEY>``
on the server, forwards the raw body, and streams the answer back. The key never reaches the
browser, a response header, an error body or a log line.

It is a Flask extension in the Flask-WTF mould, embeddable in any Flask app::

    proxy = FalProxy(app)            # or: proxy = FalProxy(); proxy.init_app(app)

    @proxy.authorize
    def signed_in(request):
        return "user_id" in session  # False answers 401

Configuration is only ``FAL_PROXY_*`` keys (see :data:`DEFAULTS`) plus fal's own ``FAL_KEY`` /
``FAL_KEY_ID`` + ``FAL_KEY_SECRET`` (app config first, then the environment).

Errors the proxy itself answers are JSON objects ``{"error": <short>, "detail": <why>}``:
400 missing or invalid ``x-fal-target-url``, 401 unauthorized or no server key, 403 endpoint not
allowed, 413 body too large, 502 upstream unreachable, 504 upstream timed out. Upstream answers
(429 with ``Retry-After`` included) are relayed as they are.

Contract: ``reference/fal-protocol.md`` §12.5, the superset of fal's 0.x and 1.2 proxies.
"""

import functools
import http.cookiejar
import json
import logging
import os
import re
import threading
import time

import requests
import urllib3
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import request
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from werkzeug.exceptions import ClientDisconnected
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge

from falweb import __version__
from falweb.config import credentials_from
from falweb.hosts import QUEUE_URL
from falweb.hosts import REST_ALPHA_URL
from falweb.hosts import REST_URL
from falweb.hosts import RUN_URL
from falweb.hosts import TARGET_URL_HEADER
from falweb.hosts import Hosts
from falweb.hosts import hostname
from falweb.hosts import is_fal_host

__all__ = [
    "DEFAULTS",
    "DEFAULT_ALLOWED_URL_PATTERNS",
    "FalProxy",
    "ProxyError",
    "TARGET_URL_HEADER",
    "url_matcher",
]

logger = logging.getLogger("falweb.proxy")

CLIENT_PROXY_HEADER = "x-fal-client-proxy"
PROXY_ID = f"falweb/{__version__}"

_REST_HOSTS = (hostname(REST_URL), hostname(REST_ALPHA_URL))
_STORAGE_OPS = ("initiate", "initiate-multipart", "complete-multipart")

#: fal's 1.2 list plus what it forgot: realtime/stream tokens, the 0.x ``rest.alpha`` host and
#: the multipart initiate that every client over 90 MiB calls (fal-protocol §12.4, §12.5).
DEFAULT_ALLOWED_URL_PATTERNS = (
    f"{hostname(RUN_URL)}/**",
    f"{hostname(QUEUE_URL)}/**",
    *(f"{host}/tokens/" for host in _REST_HOSTS),
    *(
        f"{host}/storage/upload/{op}{query}"
        for host in _REST_HOSTS
        for op in _STORAGE_OPS
        for query in ("", "\\?storage_type=fal-cdn-v3")
    ),
)

#: Every setting with its default; ``init_app`` sets the missing ones with ``setdefault``.
DEFAULTS = {
    # Path of the proxy route; fal's clients and docs use /api/fal/proxy.
    "FAL_PROXY_ROUTE": "/api/fal/proxy",
    # Globs over "host/path?query" of x-fal-target-url (``*`` within a segment, ``**`` across).
    "FAL_PROXY_ALLOWED_URL_PATTERNS": list(DEFAULT_ALLOWED_URL_PATTERNS),
    # Globs over endpoint ids ("fal-ai/flux/dev") allowed on fal.run and queue submits; [] = all.
    "FAL_PROXY_ALLOWED_ENDPOINTS": [],
    # When False a request needs an ``authorize`` hook that returns True, else 401.
    "FAL_PROXY_ALLOW_UNAUTHORIZED": True,
    # Where fal's hosts really are: None = fal itself, or the base URL of a local runtime.
    "FAL_PROXY_UPSTREAM": None,
    # Forward a client's own Authorization instead of the server key (fal's proxies do; unsafe).
    "FAL_PROXY_FORWARD_CLIENT_AUTHORIZATION": False,
    # Upstream timeout in seconds: one number, or (connect, read between bytes).
    "FAL_PROXY_TIMEOUT": (10.0, 300.0),
    # Largest request body forwarded, in bytes (413 above it); None = no limit.
    "FAL_PROXY_MAX_BODY_BYTES": 64 * 1024 * 1024,
    # Origins allowed to call the proxy cross-origin ("*" for any); [] = no CORS headers.
    "FAL_PROXY_CORS_ORIGINS": [],
    # Seconds a browser may cache a CORS preflight answer.
    "FAL_PROXY_CORS_MAX_AGE": 600,
}

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_BODYLESS = frozenset({"GET", "HEAD"})
_CHUNK = 64 * 1024
# An answer of known length up to this size is read whole and sent in one piece (a queue
# status, a submit's answer); longer ones, and every stream, are relayed as they come.
_SMALL_BODY = 64 * 1024
# Upstream origins whose pools are kept (fal has a handful; the manager keeps as many).
_MAX_POOLS = 8

# RFC 9110 hop-by-hop headers, plus what the proxy recomputes (length, encoding) or owns (CORS).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_RELAYED = _HOP_BY_HOP | {"content-length", "content-encoding", "set-cookie"}
# Upstream answers are read with decode_content: an encoded body changes length on the way.
_IDENTITY = ("", "identity")
_NOT_FORWARDED_FAL = frozenset({TARGET_URL_HEADER, CLIENT_PROXY_HEADER})
# Request headers a browser may send on a preflighted call through the proxy.
_CORS_SAFE_HEADERS = frozenset({"authorization", "content-type", "accept", "user-agent"})

# Targets are what the official clients build: plain ASCII, no spaces, no fragments.
_HOST_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]")
_PATH_RE = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)*")
_QUERY_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
_ESCAPE_RE = re.compile(r"%(..)?")
# Decoded, these would change the path's meaning past our checks (dot segments, separators).
_FORBIDDEN_ESCAPES = frozenset(b"./\\%")
_MAX_TARGET_LENGTH = 8192


class ProxyError(HTTPException):
    """An error the proxy answers itself, as JSON ``{"error", "detail"}`` with ``status``.

    Raised from the proxy's view, so the embedding app may answer it its own way, as with
    Flask-WTF's ``CSRFError``: ``@app.errorhandler(ProxyError)``. Without such a handler the
    JSON body below is the answer (with the proxy's CORS headers).
    """

    def __init__(self, status, error, detail, headers=None):
        super().__init__(description=detail)
        self.code = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    @property
    def status(self):
        return self.code

    def get_response(self, environ=None, scope=None):
        body = json.dumps({"error": self.error, "detail": self.detail})
        response = Response(body, status=self.code, mimetype="application/json")
        response.headers.update(self.headers)
        return response


class _BodyTooLarge(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Globs


def url_matcher(patterns):
    """A predicate for ``patterns``: picomatch-style globs as fal's 1.2 proxy uses them.

    ``*`` matches within one ``/`` segment, ``**`` across segments (``a/**`` also matches ``a``),
    ``?`` one character that is not ``/``, ``\\x`` a literal ``x`` (``\\?`` before a query).
    Everything else is literal, including dots.
    """
    compiled = [re.compile(_glob_to_regex(p)) for p in patterns]
    return lambda text: any(regex.fullmatch(text) for regex in compiled)


@functools.lru_cache(maxsize=64)
def _cached_matcher(patterns):
    return url_matcher(patterns)


def _matcher(patterns):
    # Config holds lists (unhashable): compile each distinct list once, not on every request.
    return _cached_matcher(tuple(patterns))


def _glob_to_regex(pattern):
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif pattern.startswith("**", i):
            i += 2
            if out and out[-1] == "/" and (i == n or pattern[i] == "/"):
                # "a/**" matches "a" too, and "a/**/b" matches "a/b".
                out.pop()
                if i == n:
                    out.append("(?:/.*)?")
                else:
                    out.append("(?:/.*)?/")
                    i += 1
            else:
                out.append(".*")
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append("/" if c == "/" else re.escape(c))
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Target validation


def parse_target(raw):
    """Split a strictly valid ``x-fal-target-url`` into ``(host, path, query)``.

    Accepts exactly what fal's clients send: ``https://<fal host>/<path>[?<query>]`` in plain
    ASCII. Anything a URL parser might read two ways is refused: userinfo, ports, IP literals,
    other schemes, fragments, backslashes, whitespace and control characters, ``//`` and dot
    segments, and percent-encoded dots, slashes, backslashes or percent signs.

    :raise ProxyError: 400 when it is not such a URL.
    """
    if not raw:
        raise ProxyError(400, "Invalid request", "Missing the x-fal-target-url header")
    if len(raw) > _MAX_TARGET_LENGTH or not raw.isascii() or not raw.isprintable():
        raise _invalid("the target URL has non-printable or non-ASCII characters")
    if any(c in raw for c in " \\#"):
        raise _invalid("the target URL has spaces, backslashes or a fragment")
    if not raw.startswith("https://"):
        raise _invalid("the target URL must use https")
    rest = raw[len("https://") :]
    authority, sep, path_query = rest.partition("/")
    if "?" in authority:
        authority, _, query = authority.partition("?")
        path_query = "?" + query
        sep = ""
    host = authority
    if not _HOST_RE.fullmatch(host):
        # "@" (userinfo), ":" (port), "[" (IPv6), "%" and digit-only labels (IPv4) all end here.
        raise _invalid("the target host is not a plain DNS name")
    if not is_fal_host(host):
        raise _invalid("the target host is not fal's")
    path, _, query = (sep + path_query).partition("?")
    if "?" in sep + path_query and not query:
        raise _invalid("the target URL has an empty query")
    path = path or "/"
    if not _PATH_RE.fullmatch(path) or not _QUERY_RE.fullmatch(query):
        raise _invalid("the target path or query has characters fal's clients never send")
    segments = path.split("/")[1:]
    if any(s in (".", "..") for s in segments) or "" in segments[:-1]:
        raise _invalid("the target path has empty or dot segments")
    for text, forbidden in ((path, _FORBIDDEN_ESCAPES), (query, b"")):
        for match in _ESCAPE_RE.finditer(text):
            hex_digits = match.group(1)
            try:
                byte = int(hex_digits, 16) if hex_digits else -1
            except ValueError:
                byte = -1
            if byte < 0x20 or byte == 0x7F or byte in forbidden:
                raise _invalid("the target URL has a forbidden percent-escape")
    return host, path, query


def _invalid(detail):
    return ProxyError(400, "Invalid request", detail)


def _endpoint_checked(host, method):
    # Endpoint ids appear as the path of run calls and of queue submits; queue status, result
    # and cancel paths use the app base instead, so they are not endpoint ids (fal 1.2 agrees).
    return host == hostname(RUN_URL) or (host == hostname(QUEUE_URL) and method == "POST")


# ---------------------------------------------------------------------------------------------
# Streaming bodies


class _RequestBody:
    """The incoming body as a file object for ``requests``, counted against the size limit."""

    def __init__(self, stream, length, limit):
        self._stream = stream
        self._length = length
        self._limit = limit
        self.sent = 0
        self.too_large = False

    def read(self, size=-1):
        data = self._stream.read(size if size and size > 0 else _CHUNK)
        self.sent += len(data)
        if self._limit is not None and self.sent > self._limit:
            self.too_large = True
            raise _BodyTooLarge()
        return data

    def __iter__(self):
        while chunk := self.read(_CHUNK):
            yield chunk

    def __len__(self):
        return self._length


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    # One session serves every user: a cookie fal sets for one must never go out with another's.
    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False


# ---------------------------------------------------------------------------------------------
# The extension


class FalProxy:
    """fal's credential proxy as a Flask extension: one route, any method, JSON errors.

    ``hosts`` (optional) is a callable returning a :class:`~falweb.hosts.Hosts` for the current
    request; without it ``FAL_PROXY_UPSTREAM`` decides (None = fal itself). ``mounts``
    (optional) is a callable returning ``{url_prefix: requests_adapter}`` mounted on the
    upstream session when it is made (falweb mounts one that calls its embedded runtime in
    process).

    Hooks, registered with decorators and run in registration order:

    - ``@proxy.authorize`` ``f(request)``: None = no opinion, True = allowed (later hooks
      skipped), False = 401, anything else = the response to send (any Flask view return value).
    - ``@proxy.before_forward`` ``f(request, target_url, headers)``: may change ``headers`` (the
      dict about to go upstream) or return a response to send instead, e.g. a 429.
    - ``@proxy.after_response`` ``f(request, target_url, upstream)``: sees the upstream
      ``requests.Response`` once its status and headers are in; its body is still to be
      streamed to the caller, so the hook must not read it. Return value ignored.
    """

    def __init__(self, app=None, hosts=None, mounts=None):
        self.hosts = hosts
        self.mounts = mounts
        self.authorize_hooks = []
        self.before_forward_hooks = []
        self.after_response_hooks = []
        self._session = None
        self._mounted = ()
        self._pool = None
        # origin ("https://queue.fal.run") → its urllib3 pool, so that a call skips the
        # manager's URL parsing and pool-key building (a twentieth of a proxied call).
        self._pools = {}
        self._session_lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        """Register the extension and its blueprint on ``app``; set missing ``FAL_PROXY_*`` keys.

        :raise ValueError: a ``FAL_PROXY_*`` value is unusable (named in the message).
        """
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, list(value) if isinstance(value, list) else value)
        _check_config(app.config)
        app.extensions["fal_proxy"] = self
        bp = Blueprint("fal_proxy", __name__)
        bp.add_url_rule(app.config["FAL_PROXY_ROUTE"], "proxy", self._view, methods=_METHODS)
        # After the view and after any error handler: answers and errors alike get CORS.
        bp.after_request(lambda response: self._cors(response, current_app.config))
        app.register_blueprint(bp)

    # Hook decorators -------------------------------------------------------------------------

    def authorize(self, f):
        """Register ``f(request) -> None | True | False | response`` (see the class docstring)."""
        self.authorize_hooks.append(f)
        return f

    def before_forward(self, f):
        """Register ``f(request, target_url, headers) -> None | response``."""
        self.before_forward_hooks.append(f)
        return f

    def after_response(self, f):
        """Register ``f(request, target_url, upstream_response)``."""
        self.after_response_hooks.append(f)
        return f

    # The view --------------------------------------------------------------------------------

    def _view(self):
        """Forward the request to ``x-fal-target-url`` and stream fal's answer back.

        Returns the upstream status, headers (minus hop-by-hop, length and encoding) and body.

        :raise 400: missing or invalid target. :raise 401: not authorized or no server key.
        :raise 403: endpoint not allowed. :raise 413: body too large.
        :raise 502: upstream unreachable. :raise 504: upstream timed out.
        """
        config = current_app.config
        started = time.perf_counter()
        where = "-"
        try:
            if request.method == "OPTIONS":
                return self._preflight(config)
            host, path, query = parse_target(_single_target(request))
            where = host + path
            return self._forward(config, host, path, query, started)
        except ProxyError as err:
            _log(request.method, where, err.code, started)
            raise

    def _forward(self, config, host, path, query, started):
        target_url = f"https://{host}{path}" + (f"?{query}" if query else "")
        method = request.method
        if not _matcher(config["FAL_PROXY_ALLOWED_URL_PATTERNS"])(
            host + path + (f"?{query}" if query else "")
        ):
            raise _invalid("the target URL is not in FAL_PROXY_ALLOWED_URL_PATTERNS")
        endpoints = config["FAL_PROXY_ALLOWED_ENDPOINTS"]
        if endpoints and _endpoint_checked(host, method):
            if not _matcher(endpoints)(path.lstrip("/")):
                raise ProxyError(403, "Forbidden", "this endpoint is not allowed")

        limit = config["FAL_PROXY_MAX_BODY_BYTES"]
        length = request.content_length
        if limit is not None and length is not None and length > limit:
            raise _too_large(limit)

        hosts = self._hosts(config)
        try:
            upstream_url = hosts.resolve(target_url)
        except ValueError:
            raise _invalid("the target host has no upstream") from None

        current = request._get_current_object()
        answer = self._authorize(current, config)
        if answer is None:
            headers = self._upstream_headers(config, hosts)
            for hook in self.before_forward_hooks:
                rv = hook(current, target_url, headers)
                if rv is not None:
                    answer = current_app.make_response(rv)
                    break
        if answer is not None:
            _log(method, host + path, answer.status_code, started)
            return answer

        body = counted = None
        if method not in _BODYLESS and (length or _is_chunked(request)):
            try:
                stream = request.stream
            except RequestEntityTooLarge:
                raise _too_large(limit) from None
            body = counted = _RequestBody(stream, length, limit)
            if not length:
                body = iter(counted)  # unknown length: chunked upstream as well

        try:
            raw = self._send(method, upstream_url, headers, body, length, config)
        except _BodyTooLarge:
            raise _too_large(limit) from None
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a refusal, not a wait
                raise ProxyError(502, "Bad Gateway", "fal could not be reached") from None
            raise ProxyError(504, "Gateway Timeout", "fal did not answer in time") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if (counted is not None and counted.too_large) or _body_too_large(exc):
                raise _too_large(limit) from None
            # The exception text names the upstream URL (queries may hold tokens): never echo it.
            raise ProxyError(502, "Bad Gateway", "fal could not be reached") from None
        except ClientDisconnected:
            raise ProxyError(400, "Bad Request", "the request body ended early") from None

        if self.after_response_hooks:
            upstream = _as_requests_response(raw, upstream_url)
            try:
                for hook in self.after_response_hooks:
                    hook(current, target_url, upstream)
            except BaseException:
                _close(raw)
                raise
        return self._relay(raw, hosts, method, host + path, started)

    def _send(self, method, url, headers, body, length, config):
        """The upstream's urllib3 response, its body still to be read.

        URLs under a mounted prefix go through the ``requests`` session and its adapters;
        all others straight to urllib3's pool: the same calls that ``requests`` makes, less
        the third of a proxied call that its session layer cost per request.
        """
        timeout = _timeout(config["FAL_PROXY_TIMEOUT"])
        if self._transport() and url.startswith(self._mounted):
            return self._get_session().request(
                method, url, headers=headers, data=body, stream=True,
                allow_redirects=False, timeout=timeout,
            ).raw
        if body is not None and length:
            headers["content-length"] = str(length)
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        origin, path = _split_origin(url)
        pool = self._pools.get(origin)
        if pool is None or pool.pool is None:  # (None: the manager closed it, to make room)
            if len(self._pools) >= _MAX_POOLS:
                self._pools.clear()
            pool = self._pools[origin] = self._pool.connection_from_url(origin)
        return pool.urlopen(
            method, path, body=body, headers=headers, redirect=False, assert_same_host=False,
            preload_content=False, decode_content=False, retries=False,
            timeout=urllib3.Timeout(connect=connect, read=read),
            chunked=body is not None and not length,
        )

    def _authorize(self, current, config):
        for hook in self.authorize_hooks:
            rv = hook(current)
            if rv is None:
                continue
            if rv is True:
                return None
            if rv is False:
                raise ProxyError(401, "Unauthorized", "the proxy refused this request")
            return current_app.make_response(rv)
        if not config["FAL_PROXY_ALLOW_UNAUTHORIZED"]:
            raise ProxyError(401, "Unauthorized", "the proxy refused this request")
        return None

    def _upstream_headers(self, config, hosts):
        # Straight from the WSGI environ, as request.headers reads them, without building
        # and title-casing every header's name on the way.
        environ = request.environ
        headers = {}
        for key, value in environ.items():
            if key.startswith("HTTP_X_FAL_"):
                name = key[5:].replace("_", "-").lower()
                if name not in _NOT_FORWARDED_FAL:
                    headers[name] = value
        headers["user-agent"] = environ.get("HTTP_USER_AGENT") or PROXY_ID
        headers["accept"] = environ.get("HTTP_ACCEPT") or "application/json"
        headers["content-type"] = environ.get("CONTENT_TYPE") or "application/json"
        # Decoding gzip here only to drop Content-Encoding costs CPU and delays SSE events.
        headers["accept-encoding"] = "identity"
        headers[CLIENT_PROXY_HEADER] = PROXY_ID

        client_auth = environ.get("HTTP_AUTHORIZATION")
        key = credentials_from(config) or credentials_from(os.environ)
        if config["FAL_PROXY_FORWARD_CLIENT_AUTHORIZATION"] and client_auth:
            headers["authorization"] = client_auth
        elif key:
            headers["authorization"] = f"Key {key}"
        elif not getattr(hosts, "is_local", False):
            # fal answers 401 anyway; saying so here tells the operator what is missing.
            raise ProxyError(401, "Unauthorized", "the proxy has no fal credentials configured")
        return headers

    def _relay(self, raw, hosts, method, where, started):
        headers = _relay_headers(raw, hosts, self._secrets())
        status = raw.status
        ttfb = time.perf_counter() - started

        # Relayed with its length only when passed on byte for byte (see _relay_headers).
        length = next((value for name, value in headers if name.lower() == "content-length"),
                      None)
        if method != "HEAD" and length is not None and int(length) <= _SMALL_BODY:
            # Whole at once: no generator to drive, and the connection is back in the pool
            # before the caller's answer goes out.
            try:
                data = raw.read(decode_content=False)
            except urllib3.exceptions.TimeoutError:
                raise ProxyError(504, "Gateway Timeout", "fal did not answer in time") from None
            except (urllib3.exceptions.HTTPError, OSError):
                # The upstream went away before the length it announced.
                raise ProxyError(502, "Bad Gateway", "fal's answer was cut short") from None
            finally:
                _close(raw)
            _log(method, where, status, started, ttfb)
            response = Response(data, status=status, headers=headers)
        else:
            response = self._streamed(raw, status, headers, method, where, started, ttfb)
        if not any(name.lower() == "content-type" for name, _ in headers):
            del response.headers["Content-Type"]
        return response

    def _streamed(self, raw, status, headers, method, where, started, ttfb):
        """The upstream's body relayed as it arrives; the connection freed at its end."""
        state = {"completed": False, "closed": False}

        def close():
            if not state["closed"]:
                state["closed"] = True
                _close(raw)
                _log(method, where, status, started, ttfb, state["completed"])

        def body():
            # read1 hands over whatever has arrived, so each SSE event goes out as it comes.
            try:
                if method != "HEAD":
                    while chunk := raw.read1(_CHUNK, decode_content=True):
                        yield chunk
                state["completed"] = True
            finally:
                close()

        response = Response(body(), status=status, headers=headers, direct_passthrough=True)
        # A body the server never iterates (HEAD, aborted responses) still frees the connection.
        response.call_on_close(close)
        return response

    def _preflight(self, config):
        response = Response(status=204)
        response.headers["Allow"] = ", ".join(_METHODS)
        origin = request.headers.get("Origin")
        if origin and _origin_allowed(origin, config):
            response.headers["Access-Control-Allow-Methods"] = ", ".join(_METHODS)
            asked = request.headers.get("Access-Control-Request-Headers", "")
            allowed = [
                name.strip()
                for name in asked.split(",")
                if name.strip().lower() in _CORS_SAFE_HEADERS
                or name.strip().lower().startswith("x-fal-")
            ]
            if allowed:
                response.headers["Access-Control-Allow-Headers"] = ", ".join(allowed)
            response.headers["Access-Control-Max-Age"] = str(config["FAL_PROXY_CORS_MAX_AGE"])
        return response

    def _cors(self, response, config):
        if not config["FAL_PROXY_CORS_ORIGINS"]:
            return response
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin and _origin_allowed(origin, config):
            wildcard = config["FAL_PROXY_CORS_ORIGINS"] in ("*", ["*"])
            response.headers["Access-Control-Allow-Origin"] = "*" if wildcard else origin
            # Without it browsers hide x-fal-request-id and 1.x clients report requestId "".
            response.headers["Access-Control-Expose-Headers"] = "x-fal-request-id"
        return response

    # Helpers ---------------------------------------------------------------------------------

    def _hosts(self, config):
        if self.hosts is not None:
            return self.hosts()
        return Hosts(config["FAL_PROXY_UPSTREAM"] or None)

    def _secrets(self):
        config = current_app.config
        found = [credentials_from(config), credentials_from(os.environ)]
        for key in ("FAL_KEY_SECRET",):
            found += [config.get(key), os.environ.get(key)]
        return [s for s in found if s]

    def _transport(self):
        """Whether any prefixes are mounted; makes the session and the pool on first use."""
        if self._pool is None:
            self._get_session()
        return bool(self._mounted)

    def _get_session(self):
        # Created on first use, not in init_app, so gunicorn workers never share sockets
        # opened before the fork.
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    session = requests.Session()
                    # No proxies, .netrc credentials or CA overrides taken from the environment:
                    # the upstream and its Authorization are exactly what this module decides.
                    session.trust_env = False
                    session.headers.clear()
                    session.cookies.set_policy(_NoCookies())
                    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0)
                    session.mount("https://", adapter)
                    session.mount("http://", adapter)
                    mounted = self.mounts() if self.mounts else {}
                    for prefix, custom in mounted.items():
                        session.mount(prefix, custom)
                    self._mounted = tuple(mounted)
                    # The pool the session's adapter would use, called directly, verifying
                    # TLS against the same CA bundle as requests (certifi's, not the system's,
                    # which a slim container may lack). Nothing from the environment here
                    # either, and no cookies are ever kept.
                    self._pool = urllib3.PoolManager(
                        num_pools=8, maxsize=64, block=False, cert_reqs="CERT_REQUIRED",
                        ca_certs=requests.certs.where())
                    self._session = session
        return self._session


def _single_target(req):
    values = req.headers.getlist(TARGET_URL_HEADER)
    if len(values) > 1:
        raise _invalid("more than one x-fal-target-url header")
    return values[0].strip() if values else ""


def _relay_headers(raw, hosts, secrets):
    """The headers of urllib3 response ``raw`` to send on: not hop-by-hop, no CORS of fal's,
    Content-Length only for a body passed on byte for byte, no secret echoed."""
    upstream_headers = raw.headers
    connection_named = {
        token.strip().lower()
        for value in upstream_headers.getlist("connection")
        for token in value.split(",")
    }
    # A known length lets the server send the body as it is, not in chunks (fewer writes);
    # chunked upstream answers and encoded ones (decoded on the way) stay chunked.
    keep_length = (
        "transfer-encoding" not in upstream_headers
        and upstream_headers.get("content-encoding", "").strip().lower() in _IDENTITY
        and len(upstream_headers.getlist("content-length")) == 1
        and upstream_headers["content-length"].strip().isdigit()
    )
    headers = []
    for name, value in upstream_headers.items():
        lower = name.lower()
        if lower == "content-length" and keep_length and lower not in connection_named:
            headers.append((name, value.strip()))
            continue
        if lower in _NOT_RELAYED or lower in connection_named:
            continue
        if lower.startswith("access-control-"):
            continue  # the proxy's own CORS policy applies, not fal's
        if lower == "location":
            value = _safe_location(value, hosts)
            if value is None:
                continue
        if any(secret in value for secret in secrets):
            continue  # belt and braces: an upstream echoing the key must not leak it
        headers.append((name, value))
    return headers


def _safe_location(value, hosts):
    # Redirects are never followed; a Location survives only if it names fal itself, so a
    # hostile upstream cannot send the caller anywhere else.
    canonical = hosts.canonical(value) if hasattr(hosts, "canonical") else value
    try:
        parse_target(canonical)
    except ProxyError:
        return None
    return canonical


def _as_requests_response(raw, url):
    # What after_response hooks are documented to see, made only when there are hooks.
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.raw = raw
    response.reason = raw.reason
    response.url = url
    return response


def _split_origin(url):
    """("scheme://host[:port]", "/path?query") of an absolute URL."""
    slash = url.find("/", url.index("://") + 3)
    return (url, "/") if slash < 0 else (url[:slash], url[slash:])


def _close(raw):
    # As requests' Response.close: a body not read to its end closes the connection, else
    # the connection goes back to the pool.
    raw.close()
    raw.release_conn()


def _origin_allowed(origin, config):
    allowed = config["FAL_PROXY_CORS_ORIGINS"]
    if allowed in ("*", ["*"]):
        return True
    if isinstance(allowed, str):
        allowed = [allowed]
    return origin in allowed


def _is_chunked(req):
    return "chunked" in req.headers.get("Transfer-Encoding", "").lower()


def _body_too_large(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, _BodyTooLarge):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _too_large(limit):
    return ProxyError(413, "Payload Too Large", f"the request body is larger than {limit} bytes")


def _timeout(value):
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def _check_config(config):
    for key in ("FAL_PROXY_ALLOWED_URL_PATTERNS", "FAL_PROXY_ALLOWED_ENDPOINTS"):
        value = config[key]
        if isinstance(value, str) or not all(isinstance(p, str) for p in value):
            raise ValueError(f"{key} must be a list of glob strings")
    if not str(config["FAL_PROXY_ROUTE"]).startswith("/"):
        raise ValueError("FAL_PROXY_ROUTE must start with '/'")
    upstream = config["FAL_PROXY_UPSTREAM"]
    if upstream and not str(upstream).startswith(("http://", "https://")):
        raise ValueError("FAL_PROXY_UPSTREAM must be None or an http(s) base URL")
    limit = config["FAL_PROXY_MAX_BODY_BYTES"]
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError("FAL_PROXY_MAX_BODY_BYTES must be None or a byte count")


def _log(method, where, status, started, ttfb=None, completed=True):
    # Host and path only: queries may carry fal_jwt_token, and headers carry the key.
    total = (time.perf_counter() - started) * 1000
    if ttfb is None:
        logger.info("%s %s %s %.1fms", method, where, status, total)
    else:
        logger.info(
            "%s %s %s %.1fms (first byte %.1fms)%s",
            method,
            where,
            status,
            total,
            ttfb * 1000,
            "" if completed else " incomplete",
        )
