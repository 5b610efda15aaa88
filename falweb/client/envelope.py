"""The request envelope every fal call goes through (fal-protocol §2, §3), without the
sending: both transports (``requests`` for :class:`~falweb.client.FalClient`, ``httpx`` for
:class:`~falweb.client.AsyncClient`) build on it.

It holds the settings (credentials, proxy, hosts, timeout, retry policy), builds fal's
headers, applies the proxy rewrite (the proxy URL as the request URL, the canonical fal URL
in ``x-fal-target-url``) or else maps the canonical URL onto the backend with
:class:`~falweb.hosts.Hosts`, and decides whether and how long to wait before a retry.
"""

import json
import os
import re
import threading
import time
from urllib.parse import urlsplit

from falweb import __version__
from falweb.client.errors import FalConnectionError
from falweb.client.errors import FalTimeoutError
from falweb.client.errors import MissingCredentialsError
from falweb.client.retry import RetryPolicy
from falweb.config import backend_of
from falweb.config import credentials_from
from falweb.hosts import TARGET_URL_HEADER
from falweb.hosts import Hosts

# Connecting never needs long; a dead host should fail in seconds, not after the read timeout.
CONNECT_TIMEOUT = 10.0

USER_AGENT = f"falweb/{__version__}"


def hosts_from_env(environ=None):
    """The local runtime at ``FALWEB_LOCAL_URL`` when the environment chooses the local
    backend (:func:`falweb.config.backend_of`) and names one; else fal's own hosts."""
    environ = os.environ if environ is None else environ
    local_url = environ.get("FALWEB_LOCAL_URL")
    return Hosts(local_url if local_url and backend_of(environ) == "local" else None)


def host_of(url):
    try:
        parts = urlsplit(url)
        return parts.netloc.rpartition("@")[2] or url[:100]
    except ValueError:
        return url[:100]


def reason_of(exc):
    """A person's words for a connection error (requests and httpx wrap the OSError)."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if match:
        return match.group(1).strip().rstrip(".").lower()
    return type(exc).__name__


def is_refused(exc):
    text = str(exc).lower()
    return "connection refused" in text or "errno 111" in text


class Envelope:
    """Settings and request building shared by both transports; safe to share between
    threads. Settings may be changed with :meth:`configure` while in use: each request
    reads them once."""

    def __init__(self, *, credentials=None, proxy_url=None, hosts=None, timeout=60.0,
                 retry=None):
        self._lock = threading.Lock()
        self.credentials = credentials
        self.proxy_url = proxy_url
        self._hosts = hosts
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()

    def configure(self, **settings):
        with self._lock:
            for name, value in settings.items():
                if name == "hosts":
                    self._hosts = value
                elif name == "timeout":
                    self.timeout = float(value)
                else:
                    setattr(self, name, value)

    @property
    def hosts(self):
        """The configured :class:`Hosts`, else the ``FALWEB_LOCAL_URL`` ones, else fal's."""
        return self._hosts if self._hosts is not None else hosts_from_env()

    def resolve_credentials(self, hosts=None):
        """The credentials to send, or None.

        Explicit credentials (a string or a zero-argument callable, called per request) are
        always sent. Keys from the environment are fal's and are sent only to fal (directly or
        through a proxy), never to a local runtime.
        """
        value = self.credentials
        if value is not None:
            value = value() if callable(value) else value
            return value or None
        hosts = hosts or self.hosts
        if hosts.is_local:
            return None
        return credentials_from(os.environ)

    def timeouts(self, timeout, deadline):
        """``(connect, read)`` seconds for one request, capped by ``deadline``."""
        total = self.timeout if timeout is None else float(timeout)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FalTimeoutError("the deadline passed before the request was sent")
            total = min(total, remaining)
        return (min(CONNECT_TIMEOUT, total), total)

    def prepare(self, method, url, input=None, headers=None, accept="application/json"):
        """``(method, target URL, headers, body bytes)`` for a fal request to canonical
        ``url``. Raises :class:`MissingCredentialsError` when fal itself would be called
        without a key."""
        method = method.upper()
        hosts = self.hosts
        proxy_url = self.proxy_url
        credentials = self.resolve_credentials(hosts)
        if not credentials and not proxy_url and not hosts.is_local:
            raise MissingCredentialsError(
                "No fal credentials: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), pass "
                "credentials= to config(), use proxy_url=, or point the client at a local "
                "runtime with FALWEB_LOCAL_URL"
            )
        merged = {}
        if credentials:
            merged["Authorization"] = f"Key {credentials}"
        merged["Accept"] = accept
        merged["Content-Type"] = "application/json"
        merged["User-Agent"] = USER_AGENT
        lower = {name.lower(): name for name in merged}
        for name, value in (headers or {}).items():
            merged.pop(lower.pop(name.lower(), name), None)
            merged[name] = value
        if proxy_url:
            target = proxy_url
            if not any(name.lower() == TARGET_URL_HEADER for name in merged):
                merged[TARGET_URL_HEADER] = url
        else:
            target = hosts.resolve(url)
        body = None
        if method != "GET" and input is not None:
            body = json.dumps(input, separators=(",", ":")).encode("utf-8")
        return method, target, merged, body

    def direct_target(self, url):
        """Where a storage upload URL really is: a canonical fal URL is mapped onto the
        backend; any other URL is used as given."""
        try:
            return self.hosts.resolve(url)
        except ValueError:
            return url

    def prepare_direct(self, call):
        """``(method, target, headers, body)`` for a ``direct`` call: no credentials, no
        proxy. Its body is ``call.data`` as given, or ``call.input`` as JSON (a
        token-authenticated stream)."""
        headers = {"User-Agent": USER_AGENT}
        body = call.data
        if call.input is not None:
            headers.update({"Accept": call.accept, "Content-Type": "application/json"})
            body = json.dumps(call.input, separators=(",", ":")).encode("utf-8")
        headers.update(call.headers or {})
        return call.method.upper(), self.direct_target(call.url), headers, body

    @staticmethod
    def next_wait(retry, attempt, retry_after, deadline):
        """Seconds to wait before retrying, or None when there is no retry left."""
        if attempt >= retry.max_retries:
            return None
        wait = retry.delay(attempt, retry_after)
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        return wait

    def wait_after_error(self, exc, is_timeout, method, target, retry, attempt, deadline):
        """The wait before retrying after a transport error, or the client's error to raise
        (:class:`FalTimeoutError`, :class:`FalConnectionError`).

        Nothing listening: waiting seconds between tries would only delay the error a person
        needs to see (fail fast). Resets and timeouts are retried when ``retry`` allows."""
        wait = None if is_refused(exc) else self.next_wait(retry, attempt, None, deadline)
        if wait is not None:
            return wait
        host = host_of(target)
        if is_timeout:
            return FalTimeoutError(f"{host} did not answer {method} in time ({reason_of(exc)})")
        return FalConnectionError(f"Cannot reach {host}: {reason_of(exc)}", host=host)

    def wait_after_status(self, response, retry, attempt, deadline):
        """The wait before retrying an answer with an error status, or None to keep it."""
        if 200 <= response.status_code < 300 or not retry.should_retry_status(
                response.status_code, response.headers):
            return None
        return self.next_wait(retry, attempt, response.headers.get("Retry-After"), deadline)
