"""The sync client's transport: :class:`~falweb.client.envelope.Envelope` over ``requests``
(one ``Session`` per client), and the ``perform`` that runs the client's plans
(:mod:`falweb.client.effects`) with blocking I/O.
"""

import time

import requests

from falweb.client import effects
from falweb.client.answers import error_from_response
from falweb.client.answers import read_response
from falweb.client.envelope import USER_AGENT
from falweb.client.envelope import Envelope
from falweb.client.envelope import hosts_from_env
from falweb.client.retry import NO_RETRY
from falweb.client.streaming import FalStream

__all__ = ["Transport", "USER_AGENT", "error_from_response", "hosts_from_env",
           "read_response"]


class Transport(Envelope):
    """Sends fal requests for one sync client; safe to share between threads."""

    def __init__(self, *, session=None, **settings):
        super().__init__(**settings)
        self.session = session or requests.Session()

    def dispatch(self, method, url, *, input=None, headers=None, retry=NO_RETRY,
                 stream=False, timeout=None, deadline=None, accept="application/json"):
        """Send a fal request to canonical ``url`` and return the ``requests.Response``.

        ``input`` is JSON-encoded as the body (none for GET or when None). Error statuses are
        returned, not raised, so callers can read streams; use :func:`read_response`.
        ``retry`` applies to retryable statuses and to connection errors; ``deadline``
        (a ``time.monotonic()`` value) caps every wait. Raises :class:`FalConnectionError`,
        :class:`FalTimeoutError`, :class:`MissingCredentialsError`.
        """
        method, target, request_headers, body = self.prepare(method, url, input, headers,
                                                             accept)
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method, target, headers=request_headers, data=body, stream=stream,
                    timeout=self.timeouts(timeout, deadline), allow_redirects=False,
                )
            except requests.exceptions.RequestException as exc:
                wait = self.wait_after_error(
                    exc, isinstance(exc, requests.exceptions.ReadTimeout), method, target,
                    retry, attempt, deadline)
                if isinstance(wait, Exception):
                    raise wait from None
            else:
                wait = self.wait_after_status(response, retry, attempt, deadline)
                if wait is None:
                    return response
                response.close()
            time.sleep(wait)
            attempt += 1

    def request(self, method, url, **kwargs):
        """:meth:`dispatch`, then :func:`read_response`: returns ``(body, response)``."""
        response = self.dispatch(method, url, **kwargs)
        try:
            return read_response(response), response
        finally:
            response.close()

    def direct(self, method, url, *, data=None, headers=None, timeout=None):
        """A request that bypasses the proxy and sends no credentials (storage upload URLs).

        Returns the response; raises :class:`FalConnectionError` / :class:`FalTimeoutError`.
        """
        return self._send_direct(effects.Call(method, url, headers=headers, timeout=timeout,
                                              direct=True, data=data))

    def _send_direct(self, call, stream=False):
        method, target, headers, body = self.prepare_direct(call)
        try:
            return self.session.request(
                method, target, data=body, headers=headers, stream=stream,
                timeout=self.timeouts(call.timeout, call.deadline), allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            error = self.wait_after_error(
                exc, isinstance(exc, requests.exceptions.ReadTimeout), method, target,
                NO_RETRY, 0, None)
            raise error from None

    # -- plans ---------------------------------------------------------------------------------

    def call(self, call):
        """Send one :class:`~falweb.client.effects.Call`; return its
        :class:`~falweb.client.effects.Answer`."""
        if call.direct:
            response = self._send_direct(call)
            try:
                return effects.Answer(read_response(response), response.headers,
                                      response.status_code)
            finally:
                response.close()
        body, response = self.request(
            call.method, call.url, input=call.input, headers=call.headers,
            retry=self.retry if call.retry else NO_RETRY, timeout=call.timeout,
            deadline=call.deadline, accept=call.accept)
        return effects.Answer(body, response.headers, response.status_code)

    def open_stream(self, call):
        """Open ``call`` as a :class:`FalStream`; raises the error the backend answered."""
        if call.direct:
            response = self._send_direct(call, stream=True)
        else:
            response = self.dispatch(
                call.method, call.url, input=call.input, headers=call.headers,
                retry=self.retry if call.retry else NO_RETRY, stream=True,
                timeout=call.timeout, deadline=call.deadline, accept=call.accept)
        if not response.ok:
            try:
                raise error_from_response(response)
            finally:
                response.close()
        return FalStream(response, deadline=call.deadline)

    def perform(self, effect):
        """Do one effect of a plan, blocking."""
        kind = type(effect)
        if kind is effects.Call:
            return self.call(effect)
        if kind is effects.Sleep:
            time.sleep(max(0.0, effect.seconds))
            return None
        if kind is effects.NextEvent:
            return next(effect.stream, effects.END)
        if kind is effects.Notify:
            return effects.notify(effect)
        if kind is effects.OpenStream:
            return self.open_stream(effect.call)
        raise TypeError(f"unknown effect {effect!r}")

    def run(self, plan):
        """Run a plan to its end; return its value."""
        return effects.drive(plan, self.perform)
