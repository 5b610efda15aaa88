"""The request envelope every JSON call goes through (fal-protocol §2, §3, §10).

Builds fal's headers, applies the proxy rewrite (the proxy URL as the request URL, the
canonical fal URL in ``x-fal-target-url``) or else maps the canonical URL onto the backend
with :class:`~falweb.hosts.Hosts`, sends with a timeout, retries only what the caller marks
safe, and turns error answers into :class:`ApiError` / :class:`ValidationError`.
"""

import json
import os
import re
import threading
import time
from urllib.parse import urlsplit

import requests

from falweb import __version__
from falweb.client.errors import ApiError
from falweb.client.errors import FalConnectionError
from falweb.client.errors import FalTimeoutError
from falweb.client.errors import MissingCredentialsError
from falweb.client.errors import ValidationError
from falweb.client.retry import NO_RETRY
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


def _host_of(url):
    try:
        parts = urlsplit(url)
        return parts.netloc.rpartition("@")[2] or url[:100]
    except ValueError:
        return url[:100]


def _reason(exc):
    # requests wraps urllib3 wraps OSError; the errno text is what a person needs to read.
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    if match:
        return match.group(1).strip().rstrip(".").lower()
    return type(exc).__name__


def error_from_response(response):
    """The :class:`ApiError` (or :class:`ValidationError` for a JSON 422) for an error answer."""
    status = response.status_code
    reason = response.reason or ""
    headers = response.headers
    request_id = headers.get("x-fal-request-id") or None
    timeout_type = headers.get("x-fal-request-timeout-type") or None
    body = None
    if "application/json" in headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
    if body is None and status != 422:
        return ApiError(f"HTTP {status}: {reason}".rstrip(": "), status, None, request_id,
                        error_type=headers.get("x-fal-error-type"), timeout_type=timeout_type,
                        headers=headers)
    detail = body.get("detail") if isinstance(body, dict) else None
    message = detail if isinstance(detail, str) else (reason or f"HTTP {status}")
    error_type = (body.get("error_type") if isinstance(body, dict) else None) \
        or headers.get("x-fal-error-type")
    cls = ValidationError if status == 422 else ApiError
    return cls(message, status, body, request_id, error_type=error_type,
               timeout_type=timeout_type, headers=headers)


def read_response(response):
    """The decoded body of a 2xx answer (JSON, bytes for octet-stream, else text).

    Raises :class:`ApiError` / :class:`ValidationError` for any other status.
    """
    if not response.ok:
        raise error_from_response(response)
    content_type = response.headers.get("Content-Type", "")
    if "application/json" in content_type:
        return response.json() if response.content else None
    if "application/octet-stream" in content_type:
        return response.content
    return response.text


class Transport:
    """Sends fal requests for one client; safe to share between threads.

    Settings may be changed with :meth:`configure` while in use: each request reads them once.
    """

    def __init__(self, *, credentials=None, proxy_url=None, hosts=None, timeout=60.0,
                 session=None, retry=None):
        self._lock = threading.Lock()
        self.credentials = credentials
        self.proxy_url = proxy_url
        self._hosts = hosts
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()

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

    def _timeouts(self, timeout, deadline):
        total = self.timeout if timeout is None else float(timeout)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FalTimeoutError("the deadline passed before the request was sent")
            total = min(total, remaining)
        return (min(CONNECT_TIMEOUT, total), total)

    def dispatch(self, method, url, *, input=None, headers=None, retry=NO_RETRY,
                 stream=False, timeout=None, deadline=None, accept="application/json"):
        """Send a fal request to canonical ``url`` and return the ``requests.Response``.

        ``input`` is JSON-encoded as the body (none for GET or when None). Error statuses are
        returned, not raised, so callers can read streams; use :func:`read_response`.
        ``retry`` applies to retryable statuses and to connection errors; ``deadline``
        (a ``time.monotonic()`` value) caps every wait. Raises :class:`FalConnectionError`,
        :class:`FalTimeoutError`, :class:`MissingCredentialsError`.
        """
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
        request_headers = requests.structures.CaseInsensitiveDict(merged)
        request_headers.update(headers or {})
        if proxy_url:
            target = proxy_url
            request_headers.setdefault(TARGET_URL_HEADER, url)
        else:
            target = hosts.resolve(url)
        body = None
        if method != "GET" and input is not None:
            body = json.dumps(input, separators=(",", ":")).encode("utf-8")
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, target, headers=request_headers, data=body, stream=stream,
                    timeout=self._timeouts(timeout, deadline), allow_redirects=False,
                )
            except requests.exceptions.RequestException as exc:
                is_timeout = isinstance(exc, requests.exceptions.ReadTimeout)
                # Nothing listening: waiting seconds between tries would only delay the
                # error a person needs to see (fail fast). Resets and timeouts are retried.
                refused = "connection refused" in str(exc).lower()
                wait = None if refused else self._next_wait(retry, attempt, None, deadline)
                if wait is None:
                    host = _host_of(target)
                    if is_timeout:
                        raise FalTimeoutError(
                            f"{host} did not answer {method} in time ({_reason(exc)})"
                        ) from None
                    raise FalConnectionError(
                        f"Cannot reach {host}: {_reason(exc)}", host=host
                    ) from None
            else:
                if response.ok or not retry.should_retry_status(response.status_code,
                                                                response.headers):
                    return response
                wait = self._next_wait(retry, attempt, response.headers.get("Retry-After"),
                                       deadline)
                if wait is None:
                    return response
                response.close()
            time.sleep(wait)
            attempt += 1

    @staticmethod
    def _next_wait(retry, attempt, retry_after, deadline):
        if attempt >= retry.max_retries:
            return None
        wait = retry.delay(attempt, retry_after)
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        return wait

    def request(self, method, url, **kwargs):
        """:meth:`dispatch`, then :func:`read_response`: returns ``(body, response)``."""
        response = self.dispatch(method, url, **kwargs)
        try:
            return read_response(response), response
        finally:
            response.close()

    def direct(self, method, url, *, data=None, headers=None, timeout=None):
        """A request that bypasses the proxy and sends no credentials (storage upload URLs).

        A canonical fal URL is mapped onto the backend; any other URL is used as given.
        Returns the response; raises :class:`FalConnectionError` / :class:`FalTimeoutError`.
        """
        try:
            target = self.hosts.resolve(url)
        except ValueError:
            target = url
        request_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        try:
            return self.session.request(
                method, target, data=data, headers=request_headers,
                timeout=self._timeouts(timeout, None), allow_redirects=False,
            )
        except requests.exceptions.ReadTimeout as exc:
            raise FalTimeoutError(f"{_host_of(target)} did not answer {method} in time "
                                  f"({_reason(exc)})") from None
        except requests.exceptions.RequestException as exc:
            host = _host_of(target)
            raise FalConnectionError(f"Cannot reach {host}: {_reason(exc)}", host=host) from None
