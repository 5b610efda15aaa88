"""A ``requests`` transport adapter that calls a WSGI app in the calling thread.

The app talks to its embedded local runtime through this adapter, never over HTTP on its own
listening socket: a page poll that waited for a free thread of the same server could
deadlock it under load (DESIGN §10). The call is an ordinary WSGI call: the runtime sees the
URL, headers and body it would have seen over the network, and its answer streams back
(SSE included) as the body of a normal ``requests.Response`` backed by a urllib3 response, so
code that reads ``response.raw`` works unchanged.
"""

import contextvars
import io
import sys
from urllib.parse import urlsplit

from requests.adapters import BaseAdapter
from requests.adapters import HTTPAdapter
from urllib3 import HTTPHeaderDict
from urllib3.response import HTTPResponse
from werkzeug.test import EnvironBuilder
from werkzeug.test import run_wsgi_app


class _ChunksReader(io.RawIOBase):
    """An iterable of byte chunks as a raw stream: a WSGI answer, or a chunked request body.

    ``context``: for a WSGI answer, the called app's own copy of the context variables,
    in which every step of the iterable runs (a streamed Flask response keeps its request
    context pushed between chunks, which must not sit on the caller's stack meanwhile).
    Closing the stream closes the iterable, which ends a streamed response and runs its
    teardown.
    """

    def __init__(self, chunks, context=None):
        self._iterable = chunks
        self._run = context.run if context is not None else (lambda f, *a: f(*a))
        self._chunks = self._run(iter, chunks)
        self._pending = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._pending:
            try:
                chunk = self._run(next, self._chunks)
            except StopIteration:
                return 0
            self._pending = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self):
        if not self.closed:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                self._run(close)
        super().close()


def _input_stream(body):
    if body is None:
        return io.BytesIO(b""), 0
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(body)), len(body)
    if hasattr(body, "read"):
        return body, None
    return io.BufferedReader(_ChunksReader(body)), None


class WSGIAdapter(BaseAdapter):
    """Sends each request into ``app`` (a WSGI callable) as if it came over the network.

    Mount it on a session for the URL prefix the app answers:
    ``session.mount("http://127.0.0.1:5000/local/", WSGIAdapter(local_app, "/local"))``;
    ``script_name`` is the path the app is mounted under in that URL.
    """

    def __init__(self, app, script_name=""):
        super().__init__()
        self.app = app
        self.script_name = script_name.rstrip("/")
        self._headers_only = HTTPAdapter()  # its build_response turns urllib3 into requests

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        parts = urlsplit(request.url)
        path = parts.path
        script = self.script_name if path.startswith(self.script_name + "/") else ""
        body, length = _input_stream(request.body)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        builder = EnvironBuilder(
            path=path[len(script):] or "/",
            base_url=f"{parts.scheme}://{parts.netloc}{script}",
            query_string=parts.query,
            method=request.method,
            headers=headers,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        # The body as it is (a file object streams): never read whole to count it.
        environ["wsgi.input"] = body
        if length is not None:
            environ["CONTENT_LENGTH"] = str(length)
        else:
            declared = request.headers.get("Content-Length")
            if declared:
                environ["CONTENT_LENGTH"] = declared
            else:
                environ.pop("CONTENT_LENGTH", None)
                environ["wsgi.input_terminated"] = True
        environ["REMOTE_ADDR"] = "127.0.0.1"
        environ["wsgi.errors"] = sys.stderr
        context = contextvars.copy_context()
        app_iter, status, response_headers = context.run(
            run_wsgi_app, self.app, environ, buffered=False)
        code, _, reason = status.partition(" ")
        raw = HTTPResponse(
            body=io.BufferedReader(_ChunksReader(app_iter, context)),
            headers=HTTPHeaderDict(list(response_headers.items())),
            status=int(code),
            reason=reason,
            preload_content=False,
            decode_content=False,
            request_method=request.method,
            request_url=request.url,
        )
        response = self._headers_only.build_response(request, raw)
        if not stream:
            response.content  # noqa: B018 - read now and close the app's iterable
        return response

    def close(self):
        self._headers_only.close()
