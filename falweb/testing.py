"""Helpers for testing against falweb (its own tests and benches use them too).

Like ``flask.testing``, this module is for test code: falweb never imports it at run time.

- :class:`ServerThread`: any WSGI app on a free loopback port, in a background thread.
- :func:`serve_local_runtime` / :func:`serve_app`: the local runtime alone, or the whole app,
  served that way and closed on exit.
- :func:`wait_until`: poll a condition with a timeout, failing with what was awaited.
"""

import time
from contextlib import contextmanager

from falweb import backend
from falweb.local import runtime_of
from falweb.serving import ServerThread

__all__ = ["ServerThread", "serve_app", "serve_local_runtime", "session_from", "wait_until"]


@contextmanager
def serve_local_runtime(config, host="127.0.0.1"):
    """The local runtime built from ``config`` on a free port (``.url``, ``.app``,
    ``.runtime``); stopped and closed on exit."""
    from falweb.local import create_local_app

    app = create_local_app(config)
    server = ServerThread(app, host)
    server.app = app
    server.runtime = runtime_of(app)
    try:
        yield server
    finally:
        server.shutdown()
        server.runtime.close()


@contextmanager
def serve_app(test_config=None, host="127.0.0.1"):
    """The whole falweb app on a free port, knowing its own URL (``.url``, ``.app``);
    stopped, with its embedded runtime closed, on exit."""
    from falweb import create_app

    app = create_app(test_config)
    server = ServerThread(app, host)
    app.config["FALWEB_SELF_URL"] = server.url
    server.app = app
    try:
        yield server
    finally:
        server.shutdown()
        runtime = backend.embedded_runtime(app)
        if runtime is not None:
            runtime.close()


def wait_until(predicate, timeout=10, interval=0.02, message=None, ignore=()):
    """Call ``predicate()`` every ``interval`` seconds until it returns something truthy;
    return that value.

    After ``timeout`` seconds raise :class:`AssertionError` naming what was awaited:
    ``message``, a string or a callable asked only then (for details known at that moment,
    such as a log file). Exceptions of the ``ignore`` types count as "not yet" (a server
    still starting refuses connections); any other exception propagates at once, so a
    predicate can give up early (a child process that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        # Checked after the call, so the predicate always gets a last look at the deadline.
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            what = what or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def session_from(address):
    """A ``requests.Session`` whose connections leave from loopback ``address`` (all of
    127/8 reaches a server on 127.0.0.1), so that two callers on this machine are two
    client addresses."""
    import requests
    from requests.adapters import HTTPAdapter

    class FromAddress(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (address, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("http://", FromAddress())
    return session
