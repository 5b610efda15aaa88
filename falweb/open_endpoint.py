"""Open any endpoint by its id: the catalog page's endpoint-id box, and the list of endpoints
known from documents (shipped, ``instance/openapi/``, registered, fal's cached)."""

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import request
from flask import url_for

from falweb.openapi import known_endpoint_ids
from falweb.openapi.examples import has_examples
from falweb.openapi.remote import valid_endpoint_id
from falweb.schemas import CATALOG
from falweb.schemas import get_endpoint

bp = Blueprint("open_endpoint", __name__)


def init_app(app):
    app.register_blueprint(bp)
    app.jinja_env.globals["documented_endpoints"] = documented_endpoints
    app.jinja_env.globals["has_examples"] = has_examples


def documented_endpoints():
    """(endpoint id, category) of every endpoint known from a document and not hand-written,
    sorted by id. An id whose document cannot be used is left out."""
    found = []
    for endpoint_id in known_endpoint_ids():
        if endpoint_id in CATALOG:
            continue
        endpoint = get_endpoint(endpoint_id)
        if endpoint is not None:
            found.append((endpoint_id, endpoint.category))
    return found


@bp.get("/models")
def open_endpoint():
    """A 303 to ``/models/<endpoint_id>`` for the id typed in the box (``?endpoint_id=``).

    :raise 400: an id that cannot be an endpoint id (``owner/name[/path]``).
    """
    endpoint_id = (request.args.get("endpoint_id") or "").strip().strip("/")
    if endpoint_id.startswith("https://fal.ai/models/"):
        # Pasting the address of a model's page on fal.ai works too.
        endpoint_id = endpoint_id[len("https://fal.ai/models/"):].strip("/")
    if not valid_endpoint_id(endpoint_id):
        abort(400, description="An endpoint id looks like owner/name, e.g. fal-ai/flux/dev.")
    return redirect(url_for("pages.form", endpoint_id=endpoint_id), 303)
