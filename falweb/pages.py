"""The web pages: catalog, generated forms, request pages with live status, results, history.

Every page works without JavaScript (forms post, plain requests get full pages and 303
redirects); with htmx the form swaps its own 422, the status partial polls itself every
second and stops on 286, unless the request page's event stream (:mod:`falweb.status_events`)
pushes it. CSRF protection (Flask-WTF) covers every form post of this
blueprint; the JSON blueprints (proxy, webhooks) are not checked, as they authenticate
their callers by other means.
"""

import os
import re
import time

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_wtf.csrf import CSRFError
from marshmallow import ValidationError
from PIL import Image
from PIL import UnidentifiedImageError
from werkzeug.exceptions import NotFound

from falweb import auth
from falweb import backend
from falweb import csrf as falweb_csrf
from falweb import history
from falweb import history_sync
from falweb import htmx
from falweb import limits
from falweb import playground
from falweb import presentation
from falweb import status_events
from falweb import webhooks
from falweb.client import errors as client_errors
from falweb.openapi.examples import example_input
from falweb.presentation import describe_error
from falweb.presentation import form_context
from falweb.presentation import history_item
from falweb.presentation import status_context
from falweb.schemas import CATALOG
from falweb.schemas import describe_fields
from falweb.schemas import form_errors
from falweb.schemas import get_endpoint
from falweb.schemas import load_input
from falweb.schemas.forms import post_data
from falweb.schemas.forms import values_from_form
from falweb.schemas.forms import values_from_input

bp = Blueprint("pages", __name__)
# Form submission tokens: what secrets.token_urlsafe() makes, nothing a caller could abuse.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")

def init_app(app):
    """Register the pages blueprint, CSRF protection and the error pages."""
    falweb_csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, _csrf_error)
    presentation.init_app(app)
    status_events.init_app(app)


@bp.before_request
def _protect():
    # A form post is at most this big, checked before the body is read (the proxy, which
    # streams uploads of any size, is another blueprint).
    request.max_content_length = current_app.config["FALWEB_FORM_MAX_BYTES"]
    falweb_csrf.protect()


@bp.app_context_processor
def _inject():
    return {"backend_info": backend.describe(), "is_htmx": htmx.is_htmx,
            "new_submission_token": history.new_submission_token,
            "status_push": status_events.enabled()}


def _submission_token():
    token = request.form.get("submission_token", "")
    return token if _TOKEN.fullmatch(token) else None


def get_client():
    """The app's fal client: its credentials, the backend's hosts (shared, never closed)."""
    return backend.shared_client()


# -- forms ----------------------------------------------------------------------------------


def _endpoint_or_404(endpoint_id):
    endpoint = get_endpoint(endpoint_id)
    if endpoint is None:
        abort(404, description=f"No model named {endpoint_id!r} in the catalog.")
    return endpoint


def _render_form(endpoint, fields, values, errors=None, upstream_error=None, status=200):
    context = form_context(endpoint, fields, values, errors, upstream_error)
    template = "partials/_form.html" if htmx.is_htmx() else "pages/form.html"
    response = make_response(render_template(template, **context), status)
    return htmx.vary(response)


@bp.get("/")
def catalog():
    """The catalog: every endpoint with its title and description, and the backend in use."""
    recent, _ = history.page(1, 8, owner=auth.owner_filter())
    return render_template(
        "pages/catalog.html",
        endpoints=list(CATALOG.values()),
        recent=[history_item(row) for row in recent],
        hosted_apps=_hosted_apps(),
    )


def _hosted_apps():
    """State of the apps the embedded runtime hosts (FALWEB_APPS), for the index."""
    runtime = backend.embedded_runtime(current_app)
    apps = getattr(runtime, "apps", None)
    return apps.state() if apps is not None else []


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
    if request.args.get("example"):
        # The document's examples, as the "example" button asks (a link: no JavaScript).
        data = example_input(endpoint)
    elif source:
        row = history.get(source)
        if row is not None and auth.can_access(row["owner"]) \
                and get_endpoint(row["endpoint_id"]) is endpoint:
            data = row["input"]
    return _render_form(endpoint, fields, values_from_input(fields, data))


@bp.post("/models/<path:endpoint_id>")
def submit(endpoint_id):
    """Validate the form and submit it to the backend's queue.

    Returns a 303 (htmx: ``HX-Redirect``) to the new request's page; the form again with
    422 and a message beside each field; the form with 502 and fal's error; or the form
    with 429 (and ``Retry-After``) over the submit or upload limit.

    :raise 404: the endpoint is not in the catalog.
    """
    endpoint = _endpoint_or_404(endpoint_id)
    fields = describe_fields(endpoint)
    values = values_from_form(fields, request.form)
    token = _submission_token()
    made = token and history.submission_state(token)[1]
    if made:
        # The same form posted again (a double click, a resent post): the request it made.
        return htmx.redirect(url_for(".request_page", request_id=made))
    # Over the limit already: say so before uploading anything (counted once it is sent).
    refused = limits.would_refuse("submits")
    if refused:
        return _render_form(endpoint, fields, values, upstream_error=limits.page_error(refused),
                            status=429)
    errors, statuses = {}, set()
    for field in fields:
        if field.kind in ("file", "files"):
            message, status = _upload(field, values)
            if message:
                errors[field.name] = [message]
                statuses.add(status)
    if errors:
        status = next((code for code in (429, 502) if code in statuses), 422)
        return _render_form(endpoint, fields, values, errors, status=status)
    try:
        input = load_input(endpoint, post_data(fields, values), form=True)
    except ValidationError as exc:
        return _render_form(endpoint, fields, values, form_errors(exc.messages), status=422)
    made, ours = _claim_submission(token)
    if made:
        return htmx.redirect(url_for(".request_page", request_id=made))
    if not ours:
        return _render_form(endpoint, fields, values, upstream_error=BEING_SUBMITTED,
                            status=409)
    # Counted here, so that a form posted twice (a double click) counts once.
    refused = limits.hit("submits")
    if refused:
        if token:
            history.finish_submission(token, None)
        return _render_form(endpoint, fields, values, upstream_error=limits.page_error(refused),
                            status=429)
    try:
        request_id = _submit(endpoint.endpoint_id, input)
    except client_errors.FalError as exc:
        if token:
            history.finish_submission(token, None)
        if isinstance(exc, client_errors.ValidationError):
            return _render_form(endpoint, fields, values, _upstream_field_errors(exc),
                                status=422)
        return _render_form(
            endpoint, fields, values, upstream_error=describe_error(exc), status=502
        )
    if token:
        history.finish_submission(token, request_id)
    if playground.wants_pane():
        return playground.result_pane(request_id)
    return htmx.redirect(url_for(".request_page", request_id=request_id))


BEING_SUBMITTED = {"status": None, "detail": "This form is being submitted already."}


def _claim_submission(token):
    """Claim a form's submission token: ``(request_id, ours)``.

    ``(id, False)``: another post of the same form made request ``id`` (show it);
    ``(None, True)``: this post may submit (or the form has no token);
    ``(None, False)``: another post still holds it, past the HTTP timeout.
    """
    if not token or history.claim_submission(token):
        return None, True
    made = _await_submission(token)
    if made:
        return made, False
    # The other post failed and released the token: this one may try.
    return None, history.claim_submission(token)


def _await_submission(token):
    """The request another post of the same form is making, once it has one; None when
    that post gave up (it releases the token) or took longer than the HTTP timeout."""
    deadline = time.monotonic() + current_app.config["FALWEB_HTTP_TIMEOUT"]
    while time.monotonic() < deadline:
        claimed, request_id = history.submission_state(token)
        if request_id or not claimed:
            return request_id
        time.sleep(0.05)
    return None


def _upload(field, values):
    """Upload the field's chosen file through storage.

    Returns ``(message, status)``: no message when it went well (or no file was chosen);
    else 422 when the file itself is wrong (not an image), 429 when over the upload limit,
    502 when the upload failed.
    """
    urls = []
    for file in request.files.getlist(f"{field.name}_file"):
        if file is None or not file.filename:
            continue
        stream = file.stream
        stream.seek(0, os.SEEK_END)
        if not stream.tell():
            continue
        stream.seek(0)
        # Image fields get images only (checked from the header); a documented endpoint's
        # other *_url fields (audio, video, weights) take any file, typed as the browser says.
        if "image" in field.name:
            kind = _image_kind(stream)
            if kind is None:
                return "Not an image: choose a PNG, JPEG, WebP or GIF file.", 422
            content_type = f"image/{kind}"
        else:
            content_type = file.mimetype or "application/octet-stream"
        stream.seek(0)
        refused = limits.hit("uploads")
        if refused:
            return f"Too many uploads: {refused.message}", 429
        try:
            # The spooled upload streams to storage; it is never read into memory whole.
            urls.append(get_client().storage.upload(stream, content_type=content_type,
                                                    file_name=file.filename))
        except client_errors.FalError as exc:
            return f"The upload failed: {describe_error(exc)['detail']}", 502
        if field.kind == "file":
            break
    if urls:
        values[field.name] = ", ".join(urls)
    return None, None


# What image fields accept, by Pillow's format name; the MIME subtype is its lower case.
_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF"})


def _image_kind(stream):
    """``png``, ``jpeg``, ``webp`` or ``gif`` when ``stream`` holds such an image, else None.

    Pillow reads only the header here (no pixels are decoded), whatever the browser claimed
    the file to be.
    """
    try:
        with Image.open(stream) as image:
            kind = image.format
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return kind.lower() if kind in _IMAGE_FORMATS else None


def _submit(endpoint_id, input):
    # A webhook finishes the history row even when nobody keeps the page open.
    client = get_client()
    handle = client.submit(endpoint_id, input=input, webhook_url=webhooks.webhook_url())
    history_sync.add(
        client,
        handle.request_id,
        endpoint_id,
        input,
        backend=current_app.config["FALWEB_BACKEND"],
        status="IN_QUEUE",
        synthetic=backend.describe()["synthetic"],
        owner=auth.current_user()["name"],
    )
    return handle.request_id


def _upstream_field_errors(exc):
    errors = {}
    for item in exc.field_errors:
        loc = [str(part) for part in item.get("loc") or [] if part != "body"]
        errors.setdefault(".".join(loc) or "_schema", []).append(str(item.get("msg", "invalid")))
    return errors


# -- requests -------------------------------------------------------------------------------


def _row_or_404(request_id):
    row = history.get(request_id)
    # Another user's request is not found, rather than forbidden: ids are not to be probed.
    if row is None or not auth.can_access(row["owner"]):
        abort(404, description="No request with this id in the history.")
    return row


def _poll(row, force=False):
    """Refresh an unfinished row from the backend; returns (row, error to show or None).

    Within ``FALWEB_POLL_INTERVAL`` of the last check of the same request (another tab,
    another poller) the history's copy is fresh enough and the backend is not asked.
    """
    if row["status"] in history.TERMINAL:
        return row, None
    checks = history_sync.recent_checks()
    if force:
        checks.forget(row["request_id"])
    if not checks.due(row["request_id"]):
        return row, None
    try:
        return history_sync.refresh(get_client(), row), None
    except client_errors.FalError as exc:
        # A hiccup reaching the backend is shown and the page keeps polling.
        return row, describe_error(exc)


def _status_response(row, poll_error=None):
    context = status_context(row, poll_error)
    body = render_template("partials/_status.html", **context)
    status = htmx.HTMX_STOP_POLLING if context["done"] else 200
    return htmx.vary(make_response(body, status))


@bp.get("/requests/<request_id>")
def request_page(request_id):
    """The request's permalink: status (polled while it runs), results, input, re-run.

    :raise 404: the request id is not in the history.
    """
    row, poll_error = _poll(_row_or_404(request_id))
    context = status_context(row, poll_error)
    return render_template("pages/request.html", **context)


@bp.get("/requests/<request_id>/status")
def status(request_id):
    """For htmx, the status partial: 200 while the request runs, 286 (stop polling) with the
    results once it is over. For a plain request, the whole request page.

    :raise 404: the request id is not in the history.
    """
    row, poll_error = _poll(_row_or_404(request_id))
    if not htmx.is_htmx():
        page = render_template("pages/request.html", **status_context(row, poll_error))
        return htmx.vary(make_response(page))
    return _status_response(row, poll_error)


@bp.get("/requests/<request_id>/status/events")
def status_stream(request_id):
    """The request's status as server-sent events (:mod:`falweb.status_events`): the status
    partial as a ``status`` event each time it changes, the final one with the results, then
    ``close``. 204 when push is off or this process has as many streams open as it may (the
    page keeps polling).

    :raise 404: the request id is not in the history.
    """
    return status_events.response(_row_or_404(request_id), get_client())


@bp.post("/requests/<request_id>/cancel")
def cancel(request_id):
    """Ask the backend to cancel the request; answers like :func:`status` for htmx, else a
    303 back to the request page.

    :raise 404: the request id is not in the history.
    """
    row = _row_or_404(request_id)
    poll_error = None
    if row["status"] not in history.TERMINAL:
        try:
            get_client().cancel(row["endpoint_id"], request_id)
        except client_errors.ApiError as exc:
            # 400: it finished meanwhile; 404: the backend forgot it. The poll settles both.
            if exc.status not in (400, 404):
                poll_error = describe_error(exc)
        except client_errors.FalError as exc:
            poll_error = describe_error(exc)
        if poll_error is None:
            history.update(request_id, cancel_requested=1)
            row, poll_error = _poll(history.get(request_id), force=True)
    if htmx.is_htmx():
        return _status_response(row, poll_error)
    return htmx.redirect(url_for(".request_page", request_id=request_id))


@bp.post("/requests/<request_id>/rerun")
def rerun(request_id):
    """Submit the request's input again (``seed=new``: without its seed, so the backend picks
    a new one). Returns a 303 (htmx: ``HX-Redirect``) to the new request's page, 502 with
    fal's error, or 429 with ``Retry-After`` over the submit limit.

    :raise 404: the request id is not in the history.
    """
    row = _row_or_404(request_id)
    input = dict(row["input"])
    if request.form.get("seed") == "new":
        input.pop("seed", None)

    def refused_page(error, status):
        context = status_context(row)
        context["rerun_error"] = error
        return htmx.vary(make_response(render_template("pages/request.html", **context),
                                       status))

    # The page's token: a double click on "Re-run" makes one request, as on the forms.
    token = _submission_token()
    made, ours = _claim_submission(token)
    if made:
        return htmx.redirect(url_for(".request_page", request_id=made))
    if not ours:
        return refused_page(BEING_SUBMITTED, 409)
    refused = limits.hit("submits")
    if refused:
        if token:
            history.finish_submission(token, None)
        return refused_page(limits.page_error(refused), 429)
    try:
        new_id = _submit(row["endpoint_id"], input)
    except client_errors.FalError as exc:
        if token:
            history.finish_submission(token, None)
        return refused_page(describe_error(exc), 502)
    if token:
        history.finish_submission(token, new_id)
    return htmx.redirect(url_for(".request_page", request_id=new_id))


# -- history --------------------------------------------------------------------------------


@bp.get("/history")
def history_page():
    """Past requests, newest first, ``?page=`` by ``FALWEB_HISTORY_PER_PAGE``.

    :raise 404: a page past the last one.
    """
    per_page = current_app.config["FALWEB_HISTORY_PER_PAGE"]
    number = request.args.get("page", 1, type=int)
    if number < 1:
        abort(404)
    rows, total = history.page(number, per_page, owner=auth.owner_filter())
    pages = max((total + per_page - 1) // per_page, 1)
    if number > pages:
        abort(404)
    return render_template(
        "pages/history.html",
        rows=[history_item(row) for row in rows],
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
    item = history_item(row)
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


@bp.get("/favicon.ico")
def favicon():
    """A redirect to the icon every page links; browsers still ask for this address."""
    return redirect(url_for("static", filename="favicon.svg"))


# -- errors ---------------------------------------------------------------------------------


def _json_path(path):
    # JSON APIs live below these prefixes; their callers never want a page.
    prefixes = (current_app.config.get("FAL_PROXY_ROUTE", "/api/fal/proxy"), "/webhooks",
                backend.LOCAL_MOUNT)
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


@bp.app_errorhandler(404)
def _not_found(exc):
    """The app's 404 page for any address a person may open (unknown pages, /live/<id>);
    JSON APIs and callers that prefer JSON keep the plain answer."""
    wanted = request.accept_mimetypes.best_match(("text/html", "application/json"))
    if _json_path(request.path) or wanted == "application/json":
        return exc
    # Werkzeug's stock text is for a bare page; the template has its own words for that.
    description = exc.description if exc.description != NotFound.description else None
    return render_template("errors/404.html", description=description), 404


@bp.errorhandler(413)
def _too_large(exc):
    limit_mb = current_app.config["FALWEB_FORM_MAX_BYTES"] / (1024 * 1024)
    return render_template("errors/too_large.html", limit_mb=f"{limit_mb:g}"), 413


def _csrf_error(exc):
    return render_template("errors/csrf.html", reason=exc.description), 400
