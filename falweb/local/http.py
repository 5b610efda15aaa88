"""Helpers the runtime's HTTP layer shares: endpoint ids, JSON bodies, validation, URLs."""

import json

from flask import current_app
from flask import request
from marshmallow import ValidationError

from falweb.client.endpoints import parse_endpoint_id
from falweb.client.errors import InvalidEndpointError
from falweb.local import errors
from falweb.local import runtime_of


def runtime():
    return runtime_of(current_app)


def endpoint_parts(endpoint_id):
    """The id parsed by the client's own rules (fal-protocol §1.3); 404 when it is not one."""
    try:
        return parse_endpoint_id(endpoint_id.strip("/"))
    except InvalidEndpointError:
        raise errors.detail(404, f"Application '{endpoint_id.strip('/')}' not found") from None


def app_base(endpoint_id):
    """``owner/alias`` (``ns/owner/alias``): the part of an id that status/result URLs use."""
    return endpoint_parts(endpoint_id).app_base


def app_alias(endpoint_id):
    """The app's alias: what tokens are scoped to."""
    return endpoint_parts(endpoint_id).alias


def base_url():
    """This runtime's external base URL (no trailing slash): FALWEB_LOCAL_PUBLIC_URL when
    set (behind a reverse proxy), else the URL the caller used to reach it."""
    public = current_app.config.get("FALWEB_LOCAL_PUBLIC_URL")
    return (public or request.url_root).rstrip("/")


def find_endpoint(endpoint_id):
    from falweb.schemas import get_endpoint

    endpoint = get_endpoint(endpoint_id)
    if endpoint is None:
        raise errors.detail(404, f"Application '{endpoint_id.strip('/')}' not found")
    return endpoint


def json_body(allow_empty=True):
    """The request body as JSON (empty → ``{}``); 422 in fal's shape when it is not JSON,
    413 above FALWEB_LOCAL_MAX_REQUEST_BYTES (inputs carry URLs; big files go to storage)."""
    limit = int(current_app.config["FALWEB_LOCAL_MAX_REQUEST_BYTES"])
    if (request.content_length or 0) > limit:
        raise _too_large(limit)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise errors.body_error("field required", "value_error.missing")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise errors.body_error("Expecting a JSON body", "value_error.jsondecode") from None


def _too_large(limit):
    return errors.detail(413, f"Request body larger than {limit} bytes; upload big files "
                              "through storage and pass their URL")


def validated_input(endpoint, data):
    """The endpoint's full input (defaults filled) or a 422 naming each bad field."""
    from falweb.schemas import fal_detail
    from falweb.schemas import load_input

    if not isinstance(data, dict):
        raise errors.body_error("Input must be a JSON object", "type_error.dict")
    try:
        return load_input(endpoint, data)
    except ValidationError as exc:
        raise errors.validation(fal_detail(exc.messages)) from None


def check_input_files(endpoint, input):
    """Reject unreadable data URIs and unknown uploaded files before queueing (422)."""
    from falweb.local.inputs import InputFileError

    try:
        runtime().input_files(endpoint, input, base_url(), allow_fetch=False)
    except InputFileError as exc:
        field, reason = exc.args
        raise errors.validation([{"loc": ["body", field], "msg": reason,
                                  "type": "value_error"}]) from None


def wants_logs():
    return request.args.get("logs", "0").strip().lower() in ("1", "true", "yes")


def verify_token(endpoint_id):
    """Check ``?fal_jwt_token=`` when present (streams, realtime); 401 if it is bad."""
    from falweb.local.tokens import TokenError

    token = request.args.get("fal_jwt_token")
    if token is None:
        return
    try:
        runtime().tokens.verify(token, app_alias(endpoint_id))
    except TokenError as exc:
        raise errors.detail(401, str(exc)) from None
