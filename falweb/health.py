"""``GET /healthz``: what the app runs on, for load balancers and people."""

import requests
from flask import Blueprint
from flask import jsonify

from falweb import backend

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """JSON ``{status, version, backend, local}``; 503 when the local runtime is unreachable."""
    from falweb import __version__

    info = backend.describe()
    body = {"status": "ok", "version": __version__, **info}
    status = 200
    if info["backend"] == "local":
        try:
            body["local"] = backend.local_state()
        except (requests.RequestException, ValueError) as exc:
            body["status"] = "degraded"
            body["local"] = {"status": "unreachable", "error": type(exc).__name__}
            status = 503
    return jsonify(body), status
