"""``GET /healthz``: what the app runs on, for load balancers and people."""

import requests
from flask import Blueprint
from flask import current_app
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
        local_app = current_app.extensions["falweb"]["local_app"]
        if local_app is not None:
            body["local"] = local_app.extensions["falweb_local"].state()
        else:
            try:
                answer = requests.get(backend.local_base() + "/healthz", timeout=5)
                body["local"] = answer.json()
            except (requests.RequestException, ValueError) as exc:
                body["status"] = "degraded"
                body["local"] = {"status": "unreachable", "error": type(exc).__name__}
                status = 503
    return jsonify(body), status
