"""Serve one hosted app in its own interpreter: ``python bootstrap.py FILE CLASS``.

This file runs inside the app's virtualenv, where falweb is not installed: it imports only
the standard library, the app's file, and what the app's kind needs (fal's SDK and uvicorn
for a fal app; falweb itself for a native one). It talks to the supervisor through stdout:
one JSON object per line. ``{"event": ...}`` lines are the bootstrap's own; ``{"log": ...}``
lines are what the app printed, with the request it printed them for, so the runtime can
record them against that request.

The SDK names used here are internal (``_allow_init``, ``fal.ref.set_current_app``,
``App._build_app``): falweb pins the SDK versions it was tested with and a contract test
checks them (tests/test_apps_contract.py).
"""

import contextvars
import importlib.util
import io
import json
import os
import socket
import sys
import threading
import time
import traceback

SECRET_HEADER = "x-falweb-app-secret"
REQUEST_ID_HEADER = "x-fal-request-id"

_request_id = contextvars.ContextVar("falweb_request_id", default=None)
_out = None
_out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj) + "\n"
    with _out_lock:
        _out.write(line)
        _out.flush()


class LogWriter:
    """A text stream whose lines become ``{"log"}`` events naming the current request."""

    def __init__(self, stream_name):
        self.stream_name = stream_name
        self.encoding = "utf-8"
        self.errors = "replace"
        self._partial = threading.local()

    def write(self, text):
        if not isinstance(text, str):
            text = str(text)
        # "\r" ends a line too: progress bars (tqdm) redraw with it and would otherwise
        # grow one line for ever.
        buffered = getattr(self._partial, "text", "") + text.replace("\r\n", "\n")
        *lines, rest = buffered.replace("\r", "\n").split("\n")
        self._partial.text = rest
        for line in lines:
            self._emit(line)
        return len(text)

    def _emit(self, line):
        line = line.rstrip()
        if line:
            emit({"log": line, "stream": self.stream_name, "request_id": _request_id.get()})

    def flush(self):
        rest = getattr(self._partial, "text", "")
        if rest:
            self._partial.text = ""
            self._emit(rest)

    def isatty(self):
        return False

    def fileno(self):
        # What a text stream without a file says (libraries check for it).
        raise io.UnsupportedOperation("hosted app output is a pipe of JSON lines")

    def writable(self):
        return True


class Guard:
    """ASGI middleware: only the runtime (which knows the per-process secret) may call the
    app, and the request id of each call scopes the app's printed lines."""

    def __init__(self, app, secret):
        self.app = app
        self.secret = secret.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        if headers.get(SECRET_HEADER.encode()) != self.secret:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return None
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body",
                        "body": b'{"detail": "only the falweb runtime calls this app"}'})
            return None
        request_id = headers.get(REQUEST_ID_HEADER.encode())
        request_id = request_id.decode("latin-1") if request_id else None
        token = _request_id.set(request_id)
        try:
            return await self.app(scope, receive, send)
        except Exception:
            # Printed here, inside the request, so the traceback is recorded against it.
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            _request_id.reset(token)
            if request_id:
                # Every line printed for the request is before this one in the pipe: the
                # runtime records the result once it has seen them all.
                emit({"event": "done", "request_id": request_id})


class WSGIGuard:
    """:class:`Guard` for a native app's WSGI app (served by Werkzeug, a thread a request)."""

    def __init__(self, app, secret):
        self.app = app
        self.secret = secret

    def __call__(self, environ, start_response):
        if environ.get("HTTP_" + SECRET_HEADER.upper().replace("-", "_")) != self.secret:
            start_response("403 Forbidden", [("Content-Type", "application/json")])
            return [b'{"detail": "only the falweb runtime calls this app"}']
        request_id = environ.get("HTTP_X_FAL_REQUEST_ID")
        token = _request_id.set(request_id)
        try:
            body = self.app(environ, start_response)
        except Exception:
            traceback.print_exc()
            raise
        finally:
            _request_id.reset(token)
        return self._iterate(body, request_id)

    def _iterate(self, body, request_id):
        # A streamed answer runs the app's code while it is read: keep its lines its own.
        token = _request_id.set(request_id)
        try:
            yield from body
        finally:
            if hasattr(body, "close"):
                body.close()
            sys.stdout.flush()
            sys.stderr.flush()
            _request_id.reset(token)
            if request_id:
                emit({"event": "done", "request_id": request_id})


def load_class(path, class_name):
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("falweb_hosted_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise SystemExit(f"{path} has no class {class_name!r}") from None


def describe(cls):
    """What the runtime needs to know about the app before it routes to it."""
    host = getattr(cls, "host_kwargs", None) or {}
    limit = getattr(cls, "max_concurrency", None) or host.get("max_concurrency")
    return {"name": getattr(cls, "app_name", None) or cls.__name__,
            "max_concurrency": limit, "kind": getattr(cls, "falweb_kind", "fal")}


def build(cls):
    """The ASGI app of a fal app (fal's own)."""
    import fal.ref

    instance = cls(_allow_init=True)
    fal.ref.set_current_app(instance)
    return instance._build_app()


def listen():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    emit({"event": "listening", "port": sock.getsockname()[1]})
    return sock


def serve_native(cls, secret):
    """A native app: ``setup`` runs in ``falweb_build`` before the port is announced."""
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    app = WSGIGuard(cls.falweb_build(), secret)
    sock = listen()
    server = make_server("127.0.0.1", sock.getsockname()[1], app, threaded=True,
                         request_handler=Quiet, fd=sock.fileno())
    server.serve_forever()


def exit_with_parent():
    """The app's process runs in its own session (so the runtime can stop all it started);
    if the runtime dies without stopping it, it must not live on holding a GPU."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="falweb-parent-watch").start()


def main(argv):
    global _out
    exit_with_parent()
    path, class_name = argv[1], argv[2]
    # The supervisor reads JSON lines from fd 1; everything the app prints goes through
    # LogWriter, so a stray print never breaks that framing.
    _out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout = LogWriter("stdout")
    sys.stderr = LogWriter("stderr")
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
    # One line per upload to the runtime's socket says nothing to the app's author.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    secret = os.environ.pop("FALWEB_APP_SECRET", "")
    cls = load_class(path, class_name)
    emit({"event": "loaded", **describe(cls)})
    if getattr(cls, "falweb_kind", None) == "native":
        return serve_native(cls, secret)
    asgi = Guard(build(cls), secret)
    sock = listen()
    import uvicorn

    config = uvicorn.Config(asgi, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=5, ws_max_size=64 * 1024 * 1024)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    # uvicorn returns (rather than raising) when the lifespan startup failed.
    if not server.started:
        emit({"event": "failed", "error": "the app's setup failed (see its log)"})
        sys.stderr.flush()
        # Threads the SDK started may not be daemons: leave at once.
        os._exit(3)


if __name__ == "__main__":
    main(sys.argv)
