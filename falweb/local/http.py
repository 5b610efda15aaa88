"""Helpers the runtime's HTTP layer shares: endpoint ids, JSON bodies, validation, URLs.

Whatever a caller sends is a fal-shaped 4xx when it cannot be used, never a 500: JSON nested
too deep (the parser would run out of stack), text that is not Unicode (a lone surrogate
escape, which no UTF-8 encoder downstream takes), a body the server cannot read.
"""

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
    set (behind a reverse proxy), else the URL the caller used to reach it, once
    :func:`check_host` accepts its ``Host``."""
    public = current_app.config.get("FALWEB_LOCAL_PUBLIC_URL")
    if public:
        return public.rstrip("/")
    check_host()
    return request.url_root.rstrip("/")


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("", "0.0.0.0", "::")


def split_host(value, default_port=None):
    """(lower-case name without brackets, port or ``default_port``) of a ``Host`` value;
    ValueError when it is not one."""
    value = (value or "").strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(value)
        port = rest[1:] if rest else None
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:  # a name, or an IPv6 address without brackets (as a setting may say it)
        name, port = value, None
    if not name or any(c in name for c in "/\\@ ?#[]"):
        raise ValueError(value)
    if port is None:
        return name, default_port
    if not port.isdigit():
        raise ValueError(value)
    return name, int(port)


def server_addresses(environ):
    """The (address, port) pairs this request reached the server at, never from ``Host``:
    gunicorn's socket (its SERVER_NAME comes from ``Host``), else SERVER_NAME/SERVER_PORT
    (Werkzeug's bound address; in-process calls' own URL) and Werkzeug's socket."""
    found = []
    sockets = [environ.get("gunicorn.socket")]
    if sockets[0] is None:
        sockets = [environ.get("werkzeug.socket")]
        try:
            found.append((environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT"))))
        except (TypeError, ValueError):
            pass
    for sock in sockets:
        try:
            name, port = sock.getsockname()[:2]
            found.append((str(name), int(port)))
        except (AttributeError, OSError, TypeError, ValueError):
            pass
    return [(name.strip("[]").lower(), port) for name, port in found
            if name.strip("[]") not in _WILDCARDS]


def host_allowed(host, environ, allowed=()):
    """Whether a request with ``Host: host`` may have URLs built from it: the server's own
    address, a loopback name on the server's port, or an entry of ``allowed`` (``name``
    for any port, ``name:port``, ``*`` for any host)."""
    default = 443 if environ.get("wsgi.url_scheme") == "https" else 80
    try:
        name, port = split_host(host, default)
    except ValueError:
        return False
    addresses = server_addresses(environ)
    if (name, port) in addresses:
        return True
    if name in LOOPBACK_NAMES and port in {p for _, p in addresses}:
        return True
    for entry in allowed:
        if entry.strip() == "*":
            return True
        try:
            allowed_name, allowed_port = split_host(entry)
        except ValueError:
            continue
        if allowed_name == name and allowed_port in (None, port):
            return True
    return False


_HOST_CHECKED = "falweb.local.host_checked"


def check_host():
    """400 ``unknown host`` unless :func:`host_allowed` accepts this request's ``Host``:
    a forged one would otherwise reach status, result and file URLs handed to callers."""
    environ = request.environ
    if environ.get(_HOST_CHECKED):
        return  # once a request: before every view, then again for each URL built
    allowed = current_app.config.get("FALWEB_LOCAL_ALLOWED_HOSTS") or []
    if isinstance(allowed, str):
        allowed = [allowed]
    if not host_allowed(request.host, environ, allowed):
        raise errors.detail(400, f"Unknown host {request.host!r}: this runtime answers at its "
                                 "own address or a name in FALWEB_LOCAL_ALLOWED_HOSTS (or set "
                                 "FALWEB_LOCAL_PUBLIC_URL)")
    environ[_HOST_CHECKED] = True


def find_endpoint(endpoint_id):
    from falweb.schemas import get_endpoint

    endpoint = get_endpoint(endpoint_id)
    if endpoint is None:
        raise errors.detail(404, f"Application '{endpoint_id.strip('/')}' not found")
    if not runtime().serves(endpoint):
        raise errors.detail(404, f"Application '{endpoint_id.strip('/')}' is not served by "
                                 f"the {runtime().engine.name} engine, which makes images "
                                 "only (the preview engine answers it)")
    return endpoint


#: Deepest nesting of a JSON body or input; fal's inputs are a few levels deep (loras[0].path).
MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
_NOT_UNICODE = "text is not valid Unicode (a lone surrogate such as \\ud800)"


def _body_read_errors():
    # What a WSGI server raises while reading a body it cannot make sense of (malformed
    # chunked encoding, a client gone mid-body): Werkzeug an OSError, gunicorn its own.
    types = [OSError]
    try:
        from gunicorn.http.errors import ParseException
    except ImportError:
        pass
    else:
        types.append(ParseException)
    return tuple(types)


BODY_READ_ERRORS = _body_read_errors()


def read_body(size=-1):
    """Up to ``size`` bytes of the request body; 400 when the server cannot read it."""
    try:
        return request.stream.read(size)
    except BODY_READ_ERRORS:
        raise errors.detail(400, "Malformed request body (bad chunked encoding, or the "
                                 "client stopped sending)") from None


def json_body(allow_empty=True):
    """The request body as JSON (empty → ``{}``); 422 in fal's shape when it is not JSON,
    nests deeper than MAX_JSON_DEPTH or holds text that is not Unicode; 400 when the body
    cannot be read; 413 above FALWEB_LOCAL_MAX_REQUEST_BYTES (inputs carry URLs; big files
    go to storage)."""
    limit = int(current_app.config["FALWEB_LOCAL_MAX_REQUEST_BYTES"])
    if (request.content_length or 0) > limit:
        raise _too_large(limit)
    raw = read_body(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise errors.body_error("field required", "value_error.missing")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise errors.body_error(TOO_DEEP, "value_error.jsondecode") from None
    except (ValueError, UnicodeDecodeError):
        raise errors.body_error("Expecting a JSON body", "value_error.jsondecode") from None
    check_json(data)
    return data


def json_problem(value):
    """Why parsed JSON cannot be taken, as (loc, msg), or None: nested deeper than
    MAX_JSON_DEPTH, or a string (or key) that is not Unicode. Walks without recursion."""
    stack = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            return (), TOO_DEEP
        if isinstance(item, str):
            if not _is_unicode(item):
                return path, _NOT_UNICODE
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not _is_unicode(key):
                    return path, f"a key: {_NOT_UNICODE}"
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
    return None


def _is_unicode(text):
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_json(data):
    """422 in fal's shape, naming where, when :func:`json_problem` finds one."""
    problem = json_problem(data)
    if problem is not None:
        loc, msg = problem
        raise errors.validation([{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])


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
    """Before queueing, refuse (422 naming the field) what can be refused without the
    network: an output above the runtime's pixel limit, unreadable data URIs, unknown
    uploaded files, files that are not images or have too many pixels."""
    from falweb.local.engines import InvalidInput

    try:
        runtime().check_input(endpoint, input, base_url(), allow_fetch=False)
    except InvalidInput as exc:
        raise errors.validation([{"loc": ["body", exc.field], "msg": exc.message,
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
