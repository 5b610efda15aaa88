"""The embedded fal-compatible local runtime (DESIGN §3).

``create_local_app(config)`` builds a separate Flask app, mounted at ``/local`` by
:func:`falweb.create_app` in local mode, or run alone with ``falweb local``. Per service:
state and rules (``queue``, ``storage``, ``tokens``, ``delivery``), an HTTP layer that only
translates (``queue_api``, ``run_api``, ``storage_api``, ``tokens_api``), fal-shaped errors
(``errors``), and engines that never see HTTP (``engines``). Calls to URLs a caller names
(webhooks, input files) go through ``netguard``: public addresses only.
"""

import os

from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.http import HTTP_STATUS_CODES

from falweb import config as settings
from falweb.hosts import TARGET_URL_HEADER

EXPOSED_HEADERS = {"Access-Control-Expose-Headers": "x-fal-request-id"}
METHODS = "GET, POST, PUT, DELETE, OPTIONS"


def _is_download():
    # File downloads are public capability URLs, as on fal's CDN: any origin may read them.
    return request.method in ("GET", "HEAD", "OPTIONS") and request.path.startswith(
        "/cdn/files/") and not request.path.startswith("/cdn/files/upload")


def cors_origin(config, origin):
    """The ``Access-Control-Allow-Origin`` value for a request from ``origin``, or None:
    FALWEB_LOCAL_CORS_ORIGINS lists the origins allowed (``"*"`` for any; empty: none, so
    browsers keep the runtime same-origin)."""
    allowed = config.get("FALWEB_LOCAL_CORS_ORIGINS") or []
    if isinstance(allowed, str):
        allowed = [allowed]
    if "*" in allowed:
        return "*"
    if origin and origin in allowed:
        return origin
    return None


def runtime_of(app):
    """The :class:`~falweb.local.runtime.Runtime` behind a ``create_local_app`` app."""
    return app.extensions["falweb_local"]


def create_local_app(config=None):
    """The local runtime's WSGI app, its workers started. ``config``: FALWEB_LOCAL_* keys."""
    from falweb.local import errors
    from falweb.local import queue_api
    from falweb.local import realtime_api
    from falweb.local import run_api
    from falweb.local import storage_api
    from falweb.local import tokens_api
    from falweb.local.http import check_host
    from falweb.local.runtime import Runtime

    app = Flask("falweb.local")
    app.config.from_mapping({k: v for k, v in settings.DEFAULTS.items()
                             if k.startswith(("FALWEB_LOCAL_", "FALWEB_APPS"))})
    app.config.update(config or {})
    if not app.config.get("FALWEB_INSTANCE_PATH"):
        app.config["FALWEB_INSTANCE_PATH"] = os.path.join(os.getcwd(), "instance")
    # Large uploads stream through; the storage service enforces its own limit.
    app.config["MAX_CONTENT_LENGTH"] = None
    runtime = Runtime(app.config)
    app.extensions["falweb_local"] = runtime
    # Endpoint documents dropped into <instance>/openapi/ are endpoints of this runtime too.
    from falweb.openapi import add_directory

    add_directory(os.path.join(app.config["FALWEB_INSTANCE_PATH"], "openapi"))
    errors.init_app(app)
    # The websocket route first: /run/<id>/realtime must not fall to the HTTP run route.
    realtime_api.sock.init_app(app)
    for bp in (realtime_api.bp, queue_api.bp, run_api.bp, storage_api.rest_bp,
               storage_api.cdn_bp, tokens_api.bp):
        app.register_blueprint(bp)

    @app.get("/healthz")
    def healthz():
        return jsonify(runtime.state())

    @app.before_request
    def preflight():
        # Browsers (fal's JS client in "client" mode) preflight their calls; only allowed
        # origins get an answer that lets them go on.
        if request.method != "OPTIONS":
            return None
        headers = {"Allow": METHODS}
        if _is_download():
            headers |= {"Access-Control-Allow-Origin": "*",
                        "Access-Control-Allow-Methods": "GET, HEAD",
                        "Access-Control-Max-Age": "600"}
        elif origin := cors_origin(app.config, request.headers.get("Origin")):
            headers |= {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": METHODS,
                "Access-Control-Allow-Headers": "authorization, content-type, accept, "
                + request.headers.get("Access-Control-Request-Headers", TARGET_URL_HEADER),
                "Access-Control-Max-Age": "600",
            }
        return "", 204, headers

    @app.before_request
    def known_host():
        # Answers carry URLs built from Host (status_url, file URLs): a forged one is
        # refused before any view runs (a websocket too, before its handshake). Downloads
        # and the health check build none, and browsers reach files by any of the app's
        # names.
        if app.config.get("FALWEB_LOCAL_PUBLIC_URL") or _is_download() \
                or request.path == "/healthz":
            return None
        check_host()
        return None

    @app.after_request
    def cors_and_reason(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if _is_download():
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers.update(EXPOSED_HEADERS)
        else:
            configured = app.config.get("FALWEB_LOCAL_CORS_ORIGINS")
            origin = cors_origin(app.config, request.headers.get("Origin"))
            if configured and configured not in ("*", ["*"]):
                response.vary.add("Origin")
            if origin:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers.update(EXPOSED_HEADERS)
        # fal's JS client shows the reason phrase as ApiError.message; Werkzeug upper-cases
        # it ("UNPROCESSABLE ENTITY"), fal sends the HTTP/1.1 spelling.
        reason = HTTP_STATUS_CODES.get(response.status_code)
        if reason:
            response.status = f"{response.status_code} {reason}"
        return response

    if runtime.apps is not None:
        from falweb.local.apps import routes as apps_routes

        apps_routes.init_app(app, runtime.apps)
    runtime.start()
    return app
