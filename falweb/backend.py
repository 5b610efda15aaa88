"""Which backend the app talks to, and the embedded local runtime when it is local.

``init_app`` mounts the local runtime at ``/local`` (Werkzeug ``DispatcherMiddleware``)
when the backend is local and ``FALWEB_LOCAL_URL`` is not set. :func:`hosts` answers where
fal's hosts are for the current app.

The app never calls its embedded runtime over HTTP on its own socket (a poll waiting for a
free thread of the same server can deadlock it): every session this module hands out
(:func:`client`, :func:`session`, the proxy's) sends URLs under the runtime's base into the
runtime's WSGI app in the calling thread (:class:`EmbeddedRouter`).
"""

from urllib.parse import urlsplit

import requests
from flask import current_app
from flask import g
from flask import has_request_context
from flask import request
from requests.adapters import HTTPAdapter
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from falweb.config import credentials_from
from falweb.hosts import Hosts

LOCAL_MOUNT = "/local"

#: App settings the embedded runtime reads too: where its database and files are.
RUNTIME_SHARED_KEYS = ("TESTING", "FALWEB_DATABASE_URL", "FALWEB_STORAGE_URL",
                       "FALWEB_S3_ENDPOINT_URL", "FALWEB_S3_REGION", "FALWEB_STORAGE_DOWNLOADS")


def init_app(app):
    ext = {"local_app": None}
    app.extensions["falweb"] = ext
    if app.config["FALWEB_BACKEND"] != "local" or app.config["FALWEB_LOCAL_URL"]:
        return
    from falweb.local import create_local_app

    if app.config["FALWEB_PUBLIC_URL"] and not app.config["FALWEB_LOCAL_PUBLIC_URL"]:
        app.config["FALWEB_LOCAL_PUBLIC_URL"] = app.config["FALWEB_PUBLIC_URL"].rstrip("/") + \
            LOCAL_MOUNT
    local_app = create_local_app(
        {
            key: value
            for key, value in app.config.items()
            if key.startswith(("FALWEB_LOCAL_", "FALWEB_APPS")) or key in RUNTIME_SHARED_KEYS
        }
        | {"FALWEB_INSTANCE_PATH": app.instance_path}
    )
    ext["local_app"] = local_app
    # From outside, the runtime's API answers only the app's users (its file URLs stay open
    # capability links); the app's own in-process calls go to local_app directly.
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {LOCAL_MOUNT: _Guarded(app, local_app)})


class _Guarded:
    """The embedded runtime behind the app's access control (:func:`falweb.auth.identify`)."""

    def __init__(self, app, local):
        self.app = app
        self.local = local

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        open_file = method in ("GET", "HEAD") and path.startswith("/cdn/files/")
        # A stream or realtime socket with a token: the runtime checks the token itself, and
        # only the app's users can get one (/rest/tokens/ is behind this guard).
        tokened = "fal_jwt_token=" in environ.get("QUERY_STRING", "")
        if not (open_file or tokened) and method != "OPTIONS":
            refused = self._refusal(environ, method, path)
            if refused is not None:
                return refused(environ, start_response)
        return self.local(environ, start_response)

    def _refusal(self, environ, method, path):
        """The answer that refuses this call (401, or 429 over the caller's limits), or
        None. The same user and the same limits as the proxy: a direct call is one."""
        from falweb import auth
        from falweb import limits

        context = self.app.request_context(dict(environ))
        # The runtime's paths are none of the app's routes: matching them against the app's
        # URL map (a NotFound built and kept, each call) would be wasted.
        context.url_adapter = None
        with context:
            g.auth_mode = auth.mode_of()
            g.user = auth.identify(mode=g.auth_mode)
            if g.user is None:
                return self.app.response_class(
                    b'{"detail": "Unauthorized: log in to the app or send an API token"}',
                    status=401, mimetype="application/json")
            # As the canonical fal URL the call stands for, so it counts as the proxy's would.
            canonical = Hosts("http://embedded").canonical("http://embedded" + path)
            if canonical.startswith("https://"):
                return limits.check_proxy_call(method, canonical)
        return None


def local_app(app=None):
    """The embedded local runtime's WSGI app, or None (fal, or a runtime elsewhere)."""
    return (app or current_app).extensions["falweb"]["local_app"]


def embedded_runtime(app=None):
    """The embedded :class:`~falweb.local.runtime.Runtime`, or None."""
    from falweb.local import runtime_of

    local = local_app(app)
    return runtime_of(local) if local is not None else None


def _self_url(environ):
    # The address this server listens on, never the Host header a caller can set: the app
    # calls its embedded runtime there. gunicorn derives SERVER_NAME from Host, so ask its
    # socket; Werkzeug's server puts its bound address in SERVER_NAME.
    host, port = environ.get("SERVER_NAME"), environ.get("SERVER_PORT")
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            host, port = sock.getsockname()[:2]
        except (OSError, ValueError, TypeError):
            pass
    host = str(host or "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port or 80}"


def self_url(app=None):
    """The URL at which this app reaches itself (no trailing slash), or None outside a
    request when ``falweb serve`` did not record it."""
    app = app or current_app
    if app.config.get("FALWEB_SELF_URL"):
        return app.config["FALWEB_SELF_URL"].rstrip("/")
    if has_request_context():
        return _self_url(request.environ) + request.script_root
    return None


def local_base(app=None):
    """Base URL of the local runtime, or None with the fal backend."""
    app = app or current_app
    if app.config["FALWEB_BACKEND"] != "local":
        return None
    if app.config["FALWEB_LOCAL_URL"]:
        return app.config["FALWEB_LOCAL_URL"].rstrip("/")
    return (self_url(app) or "http://127.0.0.1:5000") + LOCAL_MOUNT


def hosts(app=None):
    """The :class:`~falweb.hosts.Hosts` map for the app's backend."""
    return Hosts(local_base(app))


class EmbeddedRouter(HTTPAdapter):
    """A transport adapter: requests under the embedded runtime's base URL go into its WSGI
    app in this thread; any other URL goes over the network as usual.

    ``base_of()`` names the base at each call (the app's own address can differ per
    listening socket), or None when there is no embedded runtime.
    """

    def __init__(self, local, base_of, **kwargs):
        super().__init__(**kwargs)
        self._local = local
        self._base_of = base_of
        self._adapters = {}

    def send(self, request, **kwargs):
        base = self._base_of() if self._local is not None else None
        if base and (request.url.startswith(base + "/") or request.url == base):
            return self._in_process(base).send(request, **kwargs)
        return super().send(request, **kwargs)

    def _in_process(self, base):
        from falweb.wsgi_adapter import WSGIAdapter

        script_name = urlsplit(base).path
        adapter = self._adapters.get(script_name)
        if adapter is None:
            adapter = self._adapters[script_name] = WSGIAdapter(self._local, script_name)
        return adapter


def _router(app, base=None, **kwargs):
    """An :class:`EmbeddedRouter` for ``app``: the runtime's base is ``base`` when given,
    else learnt from the request (or ``FALWEB_SELF_URL``) at each call."""
    base_of = (lambda: base) if base else (
        lambda: local_base(app) if _knows_self(app) else None)
    return EmbeddedRouter(local_app(app), base_of, max_retries=0, **kwargs)


def mounts(app=None):
    """``{prefix: adapter}`` for a session that calls this app's backend (see
    :class:`EmbeddedRouter`); a request context, when there is one, names the base."""
    app = app or current_app._get_current_object()
    if local_app(app) is None:
        # Nothing in process to route to: the caller's own transport is the faster path
        # (the proxy calls urllib3's pool directly for unmounted URLs).
        return {}
    return {"http://": _router(app, pool_maxsize=64)}


def _knows_self(app):
    return bool(app.config.get("FALWEB_SELF_URL")) or has_request_context()


def session(app=None, base=None):
    """A ``requests.Session`` for the backend's URLs (file downloads, say); with an embedded
    runtime, calls to it stay in process. ``base``: the runtime's base URL when there is no
    request to learn it from. Close it when done."""
    app = app or current_app._get_current_object()
    made = requests.Session()
    if local_app(app) is not None:
        made.mount("http://", _router(app, base))
        # Calls that stay in process need no proxy from the environment (and reading it
        # costs a third of an in-process call).
        made.trust_env = False
    return made


def client(app=None, on=None):
    """A :class:`~falweb.client.FalClient` with the app's credentials, timeout and poll
    interval, on the :class:`Hosts` ``on`` (default: the backend's). Close it when done."""
    from falweb.client import FalClient

    app = app or current_app._get_current_object()
    on = on or hosts(app)
    return FalClient(credentials=credentials_from(app.config), hosts=on,
                     timeout=app.config["FALWEB_HTTP_TIMEOUT"],
                     poll_interval=app.config["FALWEB_POLL_INTERVAL"],
                     session=session(app, base=on.local_base))


def shared_client(app=None):
    """One :class:`~falweb.client.FalClient` per app and backend base, kept for the app's
    life (the pages' hot path: a poll should not build a session and its adapters). Do not
    close it."""
    app = app or current_app._get_current_object()
    on = hosts(app)
    clients = app.extensions["falweb"].setdefault("clients", {})
    found = clients.get(on.local_base)
    if found is None:
        found = clients.setdefault(on.local_base, client(app, on=on))
    return found


def describe(app=None):
    """A short, key-free description of the backend for pages and /healthz.

    ``synthetic`` says whether images are the preview engine's drawings rather than model
    outputs: always false for fal; the engine's word for a local runtime.
    """
    app = app or current_app
    name = app.config["FALWEB_BACKEND"]
    info = {"backend": name, "credentials": bool(credentials_from(app.config)),
            "synthetic": False}
    if name == "local":
        info["local_url"] = app.config["FALWEB_LOCAL_URL"] or LOCAL_MOUNT
        info["embedded"] = not app.config["FALWEB_LOCAL_URL"]
        info["synthetic"] = _local_synthetic(app)
    return info


def local_state(app=None, timeout=5):
    """The local runtime's own ``/healthz`` state: read in process when embedded, fetched
    from ``FALWEB_LOCAL_URL`` otherwise (``requests`` errors and ``ValueError`` propagate)."""
    app = app or current_app
    runtime = embedded_runtime(app)
    if runtime is not None:
        return runtime.state()
    import requests

    return requests.get(local_base(app) + "/healthz", timeout=timeout).json()


REMOTE_STATE_SECONDS = 60


def _local_synthetic(app):
    runtime = embedded_runtime(app)
    if runtime is not None:
        return runtime.engine.synthetic
    # A runtime elsewhere: every page asks, so its answer (or its silence, which reads as
    # synthetic, the safe label) is kept a minute instead of costing a request per page.
    import time

    import requests

    ext = app.extensions["falweb"]
    cached = ext.get("remote_synthetic")
    if cached is None or time.monotonic() - cached[1] > REMOTE_STATE_SECONDS:
        try:
            synthetic = bool(local_state(app, timeout=3).get("synthetic", True))
        except (requests.RequestException, ValueError, AttributeError):
            synthetic = True
        cached = ext["remote_synthetic"] = (synthetic, time.monotonic())
    return cached[0]
