"""fal-shaped errors, in one place: every failure of the runtime answers JSON with ``detail``.

Validation failures are FastAPI's ``422 {"detail": [{"loc", "msg", "type"}]}``; other errors
``{"detail": "<reason>"}``; queue cancel answers ``{"status": ...}`` as fal's does.
"""

import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("falweb.local")


class FalHTTPError(Exception):
    """An error answer: ``status`` with the JSON ``body`` and extra ``headers``."""

    def __init__(self, status, body, headers=None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def detail(status, message, **extra):
    return FalHTTPError(status, {"detail": message, **extra})


def validation(items):
    """422 with fal's field-error list."""
    return FalHTTPError(422, {"detail": items})


def body_error(message, type_="value_error"):
    return validation([{"loc": ["body"], "msg": message, "type": type_}])


def init_app(app):
    @app.errorhandler(FalHTTPError)
    def fal_error(error):
        return jsonify(error.body), error.status, error.headers

    @app.errorhandler(HTTPException)
    def http_error(error):
        # Werkzeug's own answers (404 route, 405 method) in fal's JSON shape, not HTML.
        return jsonify({"detail": error.description}), error.code

    @app.errorhandler(Exception)
    def unexpected(error):
        log.exception("unexpected error in the local runtime")
        return jsonify({"detail": "Internal server error"}), 500
