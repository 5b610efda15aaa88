"""Who is asking: the access mode, the user of each request, and the one gate in front of
the pages, history, downloads, live mode, the proxy and the embedded runtime's API.

``FALWEB_AUTH`` chooses the mode:

- ``password``: people log in (``/login``) as a user of ``falweb users`` or, with
  ``FALWEB_PASSWORD`` set, as ``admin``; programs send an API token (``Authorization:
  Bearer falweb_…``, or ``Key falweb_…`` as fal's clients send their key).
- ``header``: a reverse proxy people already run (oauth2-proxy, Authelia, Cloudflare
  Access) names the user in ``FALWEB_AUTH_HEADER``; believed only from the addresses in
  ``FALWEB_TRUSTED_PROXIES``. API tokens work too.
- ``none``: no access control; everyone is the admin ``local``. For a machine of one's own.
- empty (the default): ``password`` when a user exists or ``FALWEB_PASSWORD`` is set;
  otherwise open to this machine only — a loopback socket, a loopback peer, no forwarding
  headers — and closed, with a page saying how to open it, to everyone else.

Each request is owned by the user who made it; only its owner or an admin can see, cancel,
re-run, delete or download it (:func:`can_access`). Webhooks (signed), ``/healthz``, static
files, the login page and the runtime's file URLs (unguessable, like fal's CDN URLs) need
no user.
"""

import ipaddress
import secrets
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from falweb import htmx
from falweb.csrf import csrf
from falweb.users import UserError
from falweb.users import Users

bp = Blueprint("auth", __name__)

MODES = ("password", "header", "none")
LOCAL_USER = {"name": "local", "admin": True}
PASSWORD_USER = "admin"
# Endpoints anyone may reach: they authenticate by other means or show nothing private.
OPEN_ENDPOINTS = frozenset({"static", "health.healthz", "webhooks.receive", "auth.login",
                            "auth.logout", "pages.favicon", "security.csp_report"})
_FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-Ip", "X-Forwarded-Host")


def init_app(app):
    """The users store, the gate before every request, and the login pages."""
    mode = (app.config["FALWEB_AUTH"] or "").strip().lower()
    if mode and mode not in MODES:
        raise ValueError(f"FALWEB_AUTH must be one of {', '.join(MODES)} or empty, not {mode!r}")
    if mode == "header" and not app.config["FALWEB_TRUSTED_PROXIES"]:
        raise ValueError("FALWEB_AUTH=header needs FALWEB_TRUSTED_PROXIES (the proxy's address)")
    app.extensions["falweb_auth"] = {
        "users": Users(app.instance_path),
        "proxies": _networks(app.config["FALWEB_TRUSTED_PROXIES"]),
    }
    app.register_blueprint(bp)
    app.before_request(_gate)
    app.context_processor(lambda: {"current_user": g.get("user"),
                                   "auth_mode": g.get("auth_mode")})


def users(app=None):
    """The :class:`~falweb.users.Users` store of the app."""
    return (app or current_app).extensions["falweb_auth"]["users"]


def _networks(value):
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    try:
        return [ipaddress.ip_network(item.strip(), strict=False) for item in items
                if item.strip()]
    except ValueError as exc:
        raise ValueError(f"FALWEB_TRUSTED_PROXIES: {exc}") from None


# -- who is asking ---------------------------------------------------------------------------


def mode_of(environ=None):
    """The mode in force for this request: ``password``, ``header``, ``none`` or ``closed``
    (auto mode, no user set up, a caller from elsewhere)."""
    config = current_app.config
    mode = (config["FALWEB_AUTH"] or "").strip().lower()
    if mode:
        return mode
    if config["FALWEB_PASSWORD"] or users().any():
        return "password"
    return "none" if _from_this_machine(environ or request.environ) else "closed"


def _is_loopback(address):
    try:
        return ipaddress.ip_address(str(address).strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return str(address) == "localhost"


def _from_this_machine(environ):
    # The socket the server listens on, not the Host header (which a caller chooses).
    sock = environ.get("gunicorn.socket")
    listening = environ.get("SERVER_NAME")
    if sock is not None:
        try:
            listening = sock.getsockname()[0]
        except (OSError, ValueError, TypeError, IndexError):
            listening = None
    if not (listening and _is_loopback(listening)):
        return False
    if not _is_loopback(environ.get("REMOTE_ADDR", "")):
        return False
    # A reverse proxy on this machine forwards other people's requests: not local use.
    return not any(f"HTTP_{name.upper().replace('-', '_')}" in environ
                   for name in _FORWARDING_HEADERS)


def _token_user(header):
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() in ("bearer", "key") and value.strip():
        return users().user_of_token(value.strip())
    return None


def identify(environ=None, mode=None):
    """The user of the current request (``{"name", "admin"}``), or None."""
    mode = mode or mode_of(environ)
    if mode == "none":
        return dict(LOCAL_USER)
    if mode == "closed":
        return None
    token_user = _token_user(request.headers.get("Authorization"))
    if token_user is not None:
        return token_user
    if mode == "header":
        return _header_user()
    name = session.get("user")
    if not name:
        return None
    if name == PASSWORD_USER and current_app.config["FALWEB_PASSWORD"]:
        stored = users().get(name)
        return stored or {"name": PASSWORD_USER, "admin": True}
    return users().get(name)


def _header_user():
    config = current_app.config
    try:
        peer = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return None
    if not any(peer in network for network in current_app.extensions["falweb_auth"]["proxies"]):
        return None  # anyone can send the header; only the proxy's copy counts
    name = (request.headers.get(config["FALWEB_AUTH_HEADER"]) or "").strip()
    if not name or len(name) > 200:
        return None
    admins = config["FALWEB_ADMIN_USERS"]
    admins = admins if isinstance(admins, list | tuple) else str(admins).split(",")
    return {"name": name, "admin": name in {a.strip() for a in admins}}


def current_user():
    """The user :func:`_gate` found for this request, or None."""
    return g.get("user")


def can_access(owner):
    """Whether the current user may see and act on a request owned by ``owner``."""
    user = current_user()
    return user is not None and (user["admin"] or owner == user["name"])


def owner_filter():
    """None for an admin (every request), else the user's name."""
    user = current_user()
    return None if user is None or user["admin"] else user["name"]


# -- the gate --------------------------------------------------------------------------------


def _wants_json():
    if request.blueprint in ("fal_proxy", "webhooks") or request.headers.get("Upgrade"):
        return True
    wanted = request.accept_mimetypes.best_match(("text/html", "application/json"))
    return wanted == "application/json" or request.authorization is not None


def _gate():
    g.auth_mode = mode_of()
    g.user = identify(mode=g.auth_mode)
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if request.headers.get("Upgrade", "").lower() == "websocket" and not _same_origin():
        return _refuse(403, "Forbidden", "this websocket only accepts pages of this site")
    if g.user is not None:
        return None
    if g.auth_mode == "closed":
        return _refuse(403, "Forbidden", "falweb is reachable from other machines without "
                       "access control: see the README's 'Deploying publicly'", page="closed")
    return _refuse(401, "Unauthorized", "log in, or send an API token", page="login")


def _same_origin():
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser: authenticated like any other program
    return urlsplit(origin).netloc == request.host


def _refuse(status, error, detail, page=None):
    if _wants_json() or page is None:
        return jsonify({"error": error, "detail": detail}), status
    if page == "login":
        return htmx.redirect(url_for("auth.login", next=_next_path(request.full_path)))
    return render_template("auth/closed.html"), status


def _next_path(path):
    # Only a path of this site: "//evil.example" or "https://…" would send people away.
    path = path or "/"
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path.rstrip("?") or "/"


# -- login, logout, API tokens ---------------------------------------------------------------


@bp.before_request
def _protect():
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a good password starts a session and goes to ``?next=``.

    401 with the form for a wrong name or password; 429 with ``Retry-After`` while that
    name or this address is locked out after repeated failures.
    """
    mode = mode_of()
    next_path = _next_path(request.values.get("next"))
    if mode in ("none", "header", "closed"):
        return redirect(next_path) if mode != "closed" else (
            render_template("auth/closed.html"), 403)
    if request.method == "GET":
        return render_template("auth/login.html", next=next_path, error=None)
    name = request.form.get("name", "").strip()[:64]
    keys = [f"name:{name.lower()}", f"address:{request.remote_addr}"]
    store = users()
    wait = store.blocked_for(keys)
    if wait > 0:
        return (render_template("auth/login.html", next=next_path, name=name,
                                error="Too many failed attempts: wait a little, then try again."),
                429, {"Retry-After": str(int(wait) + 1)})
    user = store.check_password(name, request.form.get("password", ""))
    password = current_app.config["FALWEB_PASSWORD"]
    if user is None and password and name == PASSWORD_USER and secrets.compare_digest(
            request.form.get("password", "").encode(), str(password).encode()):
        user = {"name": PASSWORD_USER, "admin": True}
    if user is None:
        store.failed(keys)
        return render_template("auth/login.html", next=next_path, name=name,
                               error="Wrong user name or password."), 401
    store.succeeded(keys)
    session.clear()  # a new session: nothing set before the login survives it
    session["user"] = user["name"]
    session.permanent = True
    return redirect(next_path, code=303)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login") if mode_of() == "password" else "/", code=303)


@bp.route("/account", methods=["GET", "POST"])
def account():
    """The user's API tokens: list, create (shown once), revoke."""
    user = current_user()
    store = users()
    created, error = None, None
    if request.method == "POST":
        try:
            if request.form.get("revoke"):
                store.revoke_token(user["name"], request.form["revoke"])
            else:
                if store.get(user["name"]) is None:
                    # A user named by the reverse proxy: tokens need a row, never a password.
                    store.add(user["name"], secrets.token_urlsafe(32), admin=user["admin"])
                created = store.create_token(user["name"], request.form.get("label", ""))
        except UserError as exc:
            error = str(exc)
    return render_template("auth/account.html", user=user, tokens=store.tokens(user["name"])
                           if store.get(user["name"]) else [], created=created, error=error,
                           mode=mode_of())
