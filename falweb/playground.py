"""The playground: a form's result shown beside it, and the "API" tab with the exact call.

With htmx, a successful submit of a model's form answers with the new request's status
partial, retargeted into the result pane beside the form (``HX-Retarget``), together with a
fresh submission token for the form (an out-of-band swap) so that the next submit makes a new
request. The request keeps its permalink page, linked from the pane. Without JavaScript the
form posts and redirects to that page, as before.

:func:`api_calls` writes the same request three ways, ready to paste: ``falweb.client``
(Python), fal's JavaScript client through this app's proxy, and ``curl``.
"""

import json

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import make_response
from flask import render_template
from flask import request

from falweb import history
from falweb import htmx
from falweb.presentation import form_context
from falweb.presentation import shorten
from falweb.presentation import status_context

#: Longer strings in an input (data URIs of inline images) are left out of the snippets.
SNIPPET_STRING_LIMIT = 2000
PLAYGROUND_FIELD = "playground"


bp = Blueprint("playground", __name__)


def init_app(app):
    app.register_blueprint(bp)
    app.jinja_env.globals["api_calls"] = api_calls


@bp.get("/playground/<path:endpoint_id>")
def page(endpoint_id):
    """The endpoint's form with a result pane beside it (``?example=1``: filled with the
    document's examples). The form posts to the model's submit view, as on its own page.

    :raise 404: no endpoint (or document) with this id.
    """
    from falweb.openapi.examples import example_input
    from falweb.schemas import describe_fields
    from falweb.schemas import get_endpoint
    from falweb.schemas.forms import values_from_input

    endpoint = get_endpoint(endpoint_id)
    if endpoint is None:
        abort(404, description=f"No model named {endpoint_id!r} in the catalog.")
    fields = describe_fields(endpoint)
    data = example_input(endpoint) if request.args.get("example") else None
    context = form_context(endpoint, fields, values_from_input(fields, data))
    return render_template("pages/playground.html", playground=True, **context)


def wants_pane():
    """True for an htmx submit from the playground form (it posts ``playground=1``)."""
    return htmx.is_htmx() and request.form.get(PLAYGROUND_FIELD) == "1"


def result_pane(request_id):
    """The response that puts the new request into the result pane beside the form."""
    row = history.get(request_id)
    context = status_context(row)
    context["submission_token"] = history.new_submission_token()
    body = render_template("partials/_playground_result.html", **context)
    response = make_response(body, 200)
    response.headers["HX-Retarget"] = "#playground-result"
    response.headers["HX-Reswap"] = "innerHTML"
    return htmx.vary(response)


def _shortened(value):
    return shorten(value, SNIPPET_STRING_LIMIT,
                   lambda text: f"<{len(text)} characters left out: pass the file or its URL>")


def python_literal(value, indent=""):
    """``value`` (decoded JSON) as Python source, one item a line, keys in their order."""
    inner = indent + "    "
    if isinstance(value, dict) and value:
        items = [f"{inner}{key!r}: {python_literal(item, inner)}," for key, item in value.items()]
        return "{\n" + "\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and value:
        items = [f"{inner}{python_literal(item, inner)}," for item in value]
        return "[\n" + "\n".join(items) + f"\n{indent}]"
    return repr(value)


def api_calls(row):
    """``{"python", "javascript", "curl"}``: the request ``row`` made, as code to paste."""
    endpoint_id = row["endpoint_id"]
    data = _shortened(row["input"] or {})
    root = request.url_root.rstrip("/")
    local = current_app.config["FALWEB_BACKEND"] == "local"
    proxy_route = current_app.config.get("FAL_PROXY_ROUTE", "/api/fal/proxy")
    as_json = json.dumps(data, indent=2, ensure_ascii=False)
    python = "\n".join([
        f"# export FALWEB_LOCAL_URL={root}/local" if local else "# export FAL_KEY=...",
        "from falweb import client as fal",
        "",
        "result = fal.subscribe(",
        f"    {endpoint_id!r},",
        "    input=" + python_literal(data, "    ") + ",",
        "    logs=True,",
        ")",
        "print(result)",
    ])
    javascript = "\n".join([
        'import { fal } from "@fal-ai/client";',
        "",
        "// The key stays on the server: the client calls this app's proxy.",
        f'fal.config({{ proxyUrl: "{root}{proxy_route}" }});',
        f"const result = await fal.subscribe({json.dumps(endpoint_id)}, {{",
        "  input: " + as_json.replace("\n", "\n  ") + ",",
        "  logs: true,",
        "});",
        "console.log(result.data, result.requestId);",
    ])
    quoted = json.dumps(data, ensure_ascii=False).replace("'", "'\\''")
    if local:
        curl = (f"curl -X POST '{root}/local/queue/{endpoint_id}' \\\n"
                "  -H 'Content-Type: application/json' \\\n"
                f"  -d '{quoted}'")
    else:
        curl = (f"curl -X POST 'https://queue.fal.run/{endpoint_id}' \\\n"
                '  -H "Authorization: Key $FAL_KEY" \\\n'
                "  -H 'Content-Type: application/json' \\\n"
                f"  -d '{quoted}'")
    return {"python": python, "javascript": javascript, "curl": curl}
