"""Serving pieces: the CLI's request handlers and deferred app, and :class:`ServerThread`,
which runs a WSGI app on a loopback port in a background thread (``falweb.testing`` builds
its helpers on it)."""

import re
import threading

from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server


class QuietRequestHandler(WSGIRequestHandler):
    """No access log line per request: tests and benches would drown in them."""

    def log_request(self, *args, **kwargs):
        pass


_TOKEN = re.compile(r"(fal_jwt_token=)[^&\s]+")


class RedactingRequestHandler(WSGIRequestHandler):
    """Access log lines without the short-lived tokens that streams carry in their URLs."""

    def log_request(self, *args, **kwargs):
        # Werkzeug builds the line from self.path; redact it for the log call only.
        path = self.path
        self.path = _TOKEN.sub(r"\1[redacted]", path)
        try:
            super().log_request(*args, **kwargs)
        finally:
            self.path = path


class DeferredApp:
    """A WSGI app set after the server is bound (so the app can know its own URL)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


class ServerThread:
    """A threaded Werkzeug server on ``host`` and a free port (``port=0``), already listening.

    ``url`` is its base URL; ``shutdown()`` stops it and waits for the thread.
    """

    def __init__(self, app, host="127.0.0.1", port=0, quiet=True):
        handler = QuietRequestHandler if quiet else None
        self.server = make_server(host, port, app, threaded=True, request_handler=handler)
        self.host = host
        self.port = self.server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            # A short poll makes shutdown() quick; tests start and stop many servers.
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"server-{self.port}", daemon=True
        )
        self._thread.start()

    def shutdown(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
