"""The web pages: catalog, generated forms, request pages with live status, results, history.

Every page works without JavaScript (forms post, plain requests get full pages and 303
redirects); with htmx the form swaps its own 422, the status partial polls itself every
second and stops on 286. CSRF protection (Flask-WTF) covers every form post of this
blueprint; the JSON blueprints (proxy, webhooks) are not checked, as they authenticate
their callers by other means.
"""

import json
import re
import time
from urllib.parse import urlsplit

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import g
from flask import make_response
from flask import render_template
from flask import request
from flask import url_for
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect
from marshmallow import ValidationError

from falweb import backend
from falweb import history
from falweb import htmx
from falweb import webhooks
from falweb.schemas import CATALOG
from falweb.schemas import describe_fields
from falweb.schemas import form_errors
from falweb.schemas import get_endpoint
from falweb.schemas import load_input

bp = Blueprint("pages", __name__)
csrf = CSRFProtect()

# Log lines shown on the request page: the newest ones, enough to follow a long run.
MAX_LOG_LINES = 300
# Strings longer than this (data URIs of sync_mode images) are shortened in the raw output view.
RAW_STRING_LIMIT = 200
# Integers beyond this lose precision as JavaScript numbers, so their inputs stay text.
JS_SAFE_INTEGER = 2**53 - 1

TRUE_STRINGS = frozenset({"on", "true", "1", "yes"})
_ROW_KEY = re.compile(r"(?P<index>\d{1,6})-(?P<sub>[A-Za-z_]\w*)")
# "Step 12/28", "12/28 [00:03<00:05]": the step counters diffusion runners log (local, tqdm).
_STEP = re.compile(r"(?<![\d.])(?P<step>\d{1,5})\s*/\s*(?P<total>\d{1,5})(?![\d.])")


def init_app(app):
    """Register the pages blueprint, CSRF protection and the error pages."""
    # Check CSRF only where this blueprint asks for it (bp.before_request): the proxy and
    # other JSON blueprints, registered before or after this one, stay unchecked.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, _csrf_error)
    app.jinja_env.filters["pretty_json"] = pretty_json
    app.jinja_env.filters["duration"] = _duration
    app.jinja_env.filters["timestamp"] = _timestamp


@bp.before_request
def _protect():
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


@bp.app_context_processor
def _inject():
    return {"backend_info": backend.describe(), "is_htmx": htmx.is_htmx}


@bp.teardown_app_request
def _close_client(exc=None):
    client = g.pop("fal_client", None)
    if client is not None:
        client.close()


def get_client():
    """The fal client for this request: the app's credentials, the backend's hosts."""
    if "fal_client" not in g:
        g.fal_client = backend.client()
    return g.fal_client


def _client_errors():
    from falweb.client import errors

    return errors


# -- formatting -----------------------------------------------------------------------------


def pretty_json(value):
    """``value`` as indented JSON; big integers (seeds) stay exact, as Python prints them."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _shorten(value):
    if isinstance(value, str) and len(value) > RAW_STRING_LIMIT:
        return f"{value[:60]}… ({len(value)} characters)"
    if isinstance(value, dict):
        return {key: _shorten(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shorten(item) for item in value]
    return value


def _duration(seconds):
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


def _timestamp(epoch):
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


# -- forms ----------------------------------------------------------------------------------


def _endpoint_or_404(endpoint_id):
    endpoint = get_endpoint(endpoint_id)
    if endpoint is None:
        abort(404, description=f"No model named {endpoint_id!r} in the catalog.")
    return endpoint


def _text(value):
    return "" if value is None else str(value)


def _uses_text_box(field):
    # A number input would round a 64-bit seed through a double in the browser.
    return field.kind == "integer" and field.max is not None and field.max > JS_SAFE_INTEGER


def values_from_input(fields, data=None):
    """Form values (as the templates read them) for an input dict; defaults where absent."""
    values = {}
    for field in fields:
        value = field.default if data is None else data.get(field.name, field.default)
        if field.kind == "boolean":
            values[field.name] = bool(value)
        elif field.kind == "image_size":
            if isinstance(value, dict):
                values[field.name] = "custom"
                values[f"{field.name}_width"] = _text(value.get("width"))
                values[f"{field.name}_height"] = _text(value.get("height"))
            else:
                values[field.name] = _text(value)
        elif field.kind == "list":
            rows = value if isinstance(value, list) else []
            values[field.name] = [
                {sub.name: _row_text(sub, row.get(sub.name)) for sub in field.subfields}
                for row in rows
                if isinstance(row, dict)
            ]
        elif field.multiple and isinstance(value, list):
            values[field.name] = ", ".join(str(item) for item in value)
        else:
            values[field.name] = _text(value)
    return values


def _row_text(sub, value):
    if sub.multiple and isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return _text(value)


def values_from_form(fields, form):
    """Form values from a post; list rows ordered by index, blank rows dropped.

    Rows are renumbered from 0, as the schema numbers them in its error messages, so a
    message such as ``loras.1.scale`` lands beside the row it is about.
    """
    values = {}
    for field in fields:
        name = field.name
        if field.kind == "boolean":
            values[name] = any(v.strip().lower() in TRUE_STRINGS for v in form.getlist(name))
        elif field.kind == "image_size":
            values[name] = form.get(name, "")
            for side in ("width", "height"):
                values[f"{name}_{side}"] = form.get(f"{name}_{side}", "")
        elif field.kind == "list":
            values[name] = _rows_from_form(field, form)
        else:
            values[name] = form.get(name, "")
    return values


def _rows_from_form(field, form):
    prefix = f"{field.name}-"
    indexed = {}
    for key in form.keys():
        if not key.startswith(prefix):
            continue
        match = _ROW_KEY.fullmatch(key[len(prefix) :])
        if match is None:
            continue
        indexed.setdefault(int(match["index"]), {})[match["sub"]] = form.get(key, "")
    names = [sub.name for sub in field.subfields]
    required = [sub.name for sub in field.subfields if sub.required] or names
    rows = []
    for _, row in sorted(indexed.items()):
        row = {name: row.get(name, "") for name in names}
        if all(not row[name].strip() for name in required):
            continue
        rows.append(row)
    return rows


def post_data(fields, values):
    """The flat form post :func:`falweb.schemas.load_input` folds, built from form values."""
    data = {}
    for field in fields:
        value = values.get(field.name)
        if field.kind == "boolean":
            if value:
                data[field.name] = "on"
        elif field.kind == "list":
            for index, row in enumerate(value or []):
                for sub, text in row.items():
                    data[f"{field.name}-{index}-{sub}"] = text
        else:
            data[field.name] = value if value is not None else ""
            if field.kind == "image_size":
                for side in ("width", "height"):
                    data[f"{field.name}_{side}"] = values.get(f"{field.name}_{side}", "")
    return data


def _blank_rows(field, rows):
    # Without JavaScript there is no "add row" button, so offer empty rows to fill in.
    most = int(field.max) if field.max else 5
    wanted = min(most, max(len(rows) + 1, 2))
    return max(wanted - len(rows), 0)


def _render_form(endpoint, fields, values, errors=None, upstream_error=None, status=200):
    context = {
        "endpoint": endpoint,
        "fields": fields,
        "values": values,
        "errors": errors or {},
        "upstream_error": upstream_error,
        "blank_rows": _blank_rows,
        "uses_text_box": _uses_text_box,
        # An error inside the folded "Advanced" group must not stay hidden.
        "labels": {f.name: f.label for f in fields},
        "open_advanced": any(
            key.split(".")[0] in {f.name for f in fields if f.advanced} for key in errors or {}
        ),
    }
    template = "partials/_form.html" if htmx.is_htmx() else "pages/form.html"
    response = make_response(render_template(template, **context), status)
    return htmx.vary(response)


@bp.get("/")
def catalog():
    """The catalog: every endpoint with its title and description, and the backend in use."""
    recent, _ = history.page(1, 8)
    return render_template(
        "pages/catalog.html",
        endpoints=list(CATALOG.values()),
        recent=[_history_item(row) for row in recent],
    )


@bp.get("/models/<path:endpoint_id>")
def form(endpoint_id):
    """The endpoint's form, with the schema's defaults or (``?from=<request_id>``) the input
    of an earlier request.

    :raise 404: the endpoint is not in the catalog.
    """
    endpoint = _endpoint_or_404(endpoint_id)
    fields = describe_fields(endpoint)
    data = None
    source = request.args.get("from")
    if source:
        row = history.get(source)
        if row is not None and get_endpoint(row["endpoint_id"]) is endpoint:
            data = row["input"]
    return _render_form(endpoint, fields, values_from_input(fields, data))


@bp.post("/models/<path:endpoint_id>")
def submit(endpoint_id):
    """Validate the form and submit it to the backend's queue.

    Returns a 303 (htmx: ``HX-Redirect``) to the new request's page; the form again with
    422 and a message beside each field; or the form with 502 and fal's error.

    :raise 404: the endpoint is not in the catalog.
    """
    endpoint = _endpoint_or_404(endpoint_id)
    fields = describe_fields(endpoint)
    values = values_from_form(fields, request.form)
    errors = {}
    for field in fields:
        if field.kind == "file":
            message = _upload(field, values)
            if message:
                errors[field.name] = [message]
    if errors:
        return _render_form(endpoint, fields, values, errors, status=502)
    try:
        input = load_input(endpoint, post_data(fields, values), form=True)
    except ValidationError as exc:
        return _render_form(endpoint, fields, values, form_errors(exc.messages), status=422)
    try:
        request_id = _submit(endpoint.endpoint_id, input)
    except _client_errors().ValidationError as exc:
        return _render_form(endpoint, fields, values, _upstream_field_errors(exc), status=422)
    except _client_errors().FalError as exc:
        return _render_form(
            endpoint, fields, values, upstream_error=_describe_error(exc), status=502
        )
    return htmx.redirect(url_for(".request_page", request_id=request_id))


def _upload(field, values):
    """Upload the field's chosen file through storage; returns an error message or None."""
    file = request.files.get(f"{field.name}_file")
    if file is None or not file.filename:
        return None
    content = file.read()
    if not content:
        return None
    try:
        values[field.name] = get_client().storage.upload(
            content, content_type=file.mimetype or None, file_name=file.filename
        )
    except _client_errors().FalError as exc:
        return f"The upload failed: {_describe_error(exc)['detail']}"
    return None


def _submit(endpoint_id, input):
    # A webhook finishes the history row even when nobody keeps the page open.
    handle = get_client().submit(endpoint_id, input=input, webhook_url=webhooks.webhook_url())
    history.add(
        handle.request_id,
        endpoint_id,
        input,
        backend=current_app.config["FALWEB_BACKEND"],
        status="IN_QUEUE",
        synthetic=backend.describe()["synthetic"],
    )
    return handle.request_id


def _upstream_field_errors(exc):
    errors = {}
    for item in exc.field_errors:
        loc = [str(part) for part in item.get("loc") or [] if part != "body"]
        errors.setdefault(".".join(loc) or "_schema", []).append(str(item.get("msg", "invalid")))
    return errors


def _describe_error(exc):
    """What to show of a client error: fal's ``detail`` when there is one (escaped later)."""
    errors = _client_errors()
    if isinstance(exc, errors.ApiError):
        return history.error_of(exc)
    if isinstance(exc, errors.FalConnectionError):
        return {"status": None, "detail": f"Could not reach the backend ({exc.message})."}
    if isinstance(exc, errors.FalTimeoutError):
        return {"status": None, "detail": "The backend did not answer in time."}
    return {"status": None, "detail": str(exc)}


# -- requests -------------------------------------------------------------------------------


def _row_or_404(request_id):
    row = history.get(request_id)
    if row is None:
        abort(404, description="No request with this id in the history.")
    return row


def _status_context(row, poll_error=None):
    now = time.time()
    endpoint = get_endpoint(row["endpoint_id"])
    result = row.get("result") or {}
    return {
        "row": row,
        "endpoint": endpoint,
        "done": row["status"] in history.TERMINAL,
        "elapsed": (row.get("finished") or now) - row["created"],
        "logs": row["logs"][-MAX_LOG_LINES:],
        "hidden_logs": max(len(row["logs"]) - MAX_LOG_LINES, 0),
        "progress": _progress(row),
        "result": result,
        "images": _images(row, result),
        "raw_output": _shorten(result),
        "poll_error": poll_error,
        "synthetic": row["synthetic"],
    }


def _progress(row):
    """(step, total) from the newest log line that counts steps, while the request runs."""
    if row["status"] != "IN_PROGRESS":
        return None
    for line in reversed(row["logs"][-20:]):
        message = line.get("message") if isinstance(line, dict) else None
        match = _STEP.search(message) if isinstance(message, str) else None
        if match and 0 < int(match["step"]) <= int(match["total"]):
            return int(match["step"]), int(match["total"])
    return None


def _images(row, result):
    images = result.get("images") if isinstance(result, dict) else None
    flags = result.get("has_nsfw_concepts") if isinstance(result, dict) else None
    found = []
    for index, image in enumerate(images if isinstance(images, list) else []):
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            continue
        content_type = image.get("content_type") or "image/jpeg"
        extension = content_type.rsplit("/", 1)[-1].split(";")[0] or "img"
        found.append(
            {
                "index": index,
                "url": _browser_url(image["url"]),
                "width": image.get("width"),
                "height": image.get("height"),
                "content_type": content_type,
                "file_name": f"{row['request_id']}-{index}.{extension}",
                "nsfw": bool(flags[index])
                if isinstance(flags, list) and index < len(flags)
                else False,
            }
        )
    return found


def _browser_url(url):
    """``url`` as this page's browser should fetch it.

    The embedded runtime names its files by the address the server is bound to (often
    127.0.0.1), which a browser on another machine cannot reach; its own path on this app
    works from anywhere, and survives the app moving to another port.
    """
    config = current_app.config
    if config["FALWEB_BACKEND"] != "local" or config["FALWEB_LOCAL_URL"]:
        return url
    parts = urlsplit(url)
    mount = request.script_root + backend.LOCAL_MOUNT + "/"
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme in ("http", "https") and parts.path.startswith(mount):
        if loopback or parts.netloc == request.host:
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return url


def _poll(row):
    """Refresh an unfinished row from the backend; returns (row, error to show or None)."""
    if row["status"] in history.TERMINAL:
        return row, None
    try:
        return history.refresh(get_client(), row), None
    except _client_errors().FalError as exc:
        # A hiccup reaching the backend is shown and the page keeps polling.
        return row, _describe_error(exc)


def _status_response(row, poll_error=None):
    context = _status_context(row, poll_error)
    body = render_template("partials/_status.html", **context)
    status = htmx.HTMX_STOP_POLLING if context["done"] else 200
    return htmx.vary(make_response(body, status))


@bp.get("/requests/<request_id>")
def request_page(request_id):
    """The request's permalink: status (polled while it runs), results, input, re-run.

    :raise 404: the request id is not in the history.
    """
    row, poll_error = _poll(_row_or_404(request_id))
    context = _status_context(row, poll_error)
    return render_template("pages/request.html", **context)


@bp.get("/requests/<request_id>/status")
def status(request_id):
    """For htmx, the status partial: 200 while the request runs, 286 (stop polling) with the
    results once it is over. For a plain request, the whole request page.

    :raise 404: the request id is not in the history.
    """
    row, poll_error = _poll(_row_or_404(request_id))
    if not htmx.is_htmx():
        page = render_template("pages/request.html", **_status_context(row, poll_error))
        return htmx.vary(make_response(page))
    return _status_response(row, poll_error)


@bp.post("/requests/<request_id>/cancel")
def cancel(request_id):
    """Ask the backend to cancel the request; answers like :func:`status` for htmx, else a
    303 back to the request page.

    :raise 404: the request id is not in the history.
    """
    row = _row_or_404(request_id)
    poll_error = None
    if row["status"] not in history.TERMINAL:
        errors = _client_errors()
        try:
            get_client().cancel(row["endpoint_id"], request_id)
        except errors.ApiError as exc:
            # 400: it finished meanwhile; 404: the backend forgot it. The poll settles both.
            if exc.status not in (400, 404):
                poll_error = _describe_error(exc)
        except errors.FalError as exc:
            poll_error = _describe_error(exc)
        if poll_error is None:
            history.update(request_id, cancel_requested=1)
            row, poll_error = _poll(history.get(request_id))
    if htmx.is_htmx():
        return _status_response(row, poll_error)
    return htmx.redirect(url_for(".request_page", request_id=request_id))


@bp.post("/requests/<request_id>/rerun")
def rerun(request_id):
    """Submit the request's input again (``seed=new``: without its seed, so the backend picks
    a new one). Returns a 303 (htmx: ``HX-Redirect``) to the new request's page, or 502 with
    fal's error.

    :raise 404: the request id is not in the history.
    """
    row = _row_or_404(request_id)
    input = dict(row["input"])
    if request.form.get("seed") == "new":
        input.pop("seed", None)
    try:
        new_id = _submit(row["endpoint_id"], input)
    except _client_errors().FalError as exc:
        context = _status_context(row)
        context["rerun_error"] = _describe_error(exc)
        return htmx.vary(make_response(render_template("pages/request.html", **context), 502))
    return htmx.redirect(url_for(".request_page", request_id=new_id))


# -- history --------------------------------------------------------------------------------


def _history_item(row):
    return {
        **row,
        "thumbnail_url": _browser_url(row["thumbnail_url"]) if row["thumbnail_url"] else None,
        "done": row["status"] in history.TERMINAL,
    }


@bp.get("/history")
def history_page():
    """Past requests, newest first, ``?page=`` by ``FALWEB_HISTORY_PER_PAGE``.

    :raise 404: a page past the last one.
    """
    per_page = current_app.config["FALWEB_HISTORY_PER_PAGE"]
    number = request.args.get("page", 1, type=int)
    if number < 1:
        abort(404)
    rows, total = history.page(number, per_page)
    pages = max((total + per_page - 1) // per_page, 1)
    if number > pages:
        abort(404)
    return render_template(
        "pages/history.html",
        rows=[_history_item(row) for row in rows],
        page=number,
        pages=pages,
        total=total,
    )


@bp.get("/history/<request_id>/row")
def history_row(request_id):
    """One history entry, refreshed from the backend: 286 once the request is over.

    :raise 404: the request id is not in the history.
    """
    row, _ = _poll(_row_or_404(request_id))
    item = _history_item(row)
    body = render_template("partials/_history_row.html", row=item)
    return htmx.vary(make_response(body, htmx.HTMX_STOP_POLLING if item["done"] else 200))


@bp.post("/history/<request_id>/delete")
def delete(request_id):
    """Forget a request. htmx gets an empty 200 (the entry is swapped away); a plain post a
    303 back to the history page it came from.

    :raise 404: the request id is not in the history.
    """
    _row_or_404(request_id)
    history.delete(request_id)
    if htmx.is_htmx():
        return htmx.vary(make_response("", 200))
    page = request.form.get("page", 1, type=int)
    return htmx.redirect(url_for(".history_page", page=page if page > 1 else None))


# -- errors ---------------------------------------------------------------------------------


@bp.errorhandler(404)
def _not_found(exc):
    return render_template("errors/404.html", description=exc.description), 404


def _csrf_error(exc):
    return render_template("errors/csrf.html", reason=exc.description), 400
