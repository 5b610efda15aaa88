"""Security headers on every response of the app, and ``POST /csp-report``.

Pages, static files, downloads, the proxy's answers and error pages all carry a
Content-Security-Policy that the pages meet without ``'unsafe-inline'`` or ``'unsafe-eval'``
(htmx is configured for it in ``templates/base.html``: no indicator ``<style>``, no eval, no
scripts from swapped content), ``nosniff``, ``X-Frame-Options``, a referrer policy, COOP,
and HSTS over https. The embedded runtime at ``/local`` is another WSGI app and is not
covered here.

Browsers send what the policy blocked to ``/csp-report`` (``report-uri``); each report is one
log line and one more in :attr:`CSPReports.count` (``app.extensions["csp_reports"]``), which
the browser tests read to prove a session met the policy.
"""

import json
import logging
import threading
from collections import deque
from urllib.parse import urlsplit

from flask import Blueprint
from flask import current_app
from flask import request
from flask import url_for

bp = Blueprint("security", __name__)
log = logging.getLogger("falweb.csp")

#: The policy's directives; ``img-src``/``media-src`` gain the local runtime's own origin
#: when it runs elsewhere (its file URLs are then on another origin, often plain http).
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: https:; media-src 'self' data: blob: https:; "
    # 'self' also matches ws:/wss: on this origin (CSP Level 3), which live mode needs.
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
    "object-src 'none'"
)
# A report is a small JSON object; anything bigger is not one.
MAX_REPORT_BYTES = 64 * 1024
# The fields of a report worth a log line, each cut to this many characters.
LOGGED_CHARS = 200

STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"


class CSPReports:
    """How many violation reports arrived, and the last few (for a failing test to show)."""

    def __init__(self, keep=20):
        self._lock = threading.Lock()
        self.count = 0
        self.recent = deque(maxlen=keep)

    def add(self, report):
        with self._lock:
            self.count += 1
            self.recent.append(report)


def init_app(app):
    """Add the headers to every response, the report endpoint, and safer session-cookie
    defaults (kept when the configuration already changed Flask's)."""
    # Flask's defaults are HttpOnly, SameSite unset and Secure off: Lax keeps the session
    # cookie off cross-site posts, and an https public URL means it never needs plain http.
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if not app.config.get("SESSION_COOKIE_SECURE") and _public_https(app):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.extensions["csp_reports"] = CSPReports()
    app.register_blueprint(bp)
    csrf = app.extensions.get("csrf")
    if csrf is not None:  # a JSON endpoint for browsers' reports: there is no form to protect
        csrf.exempt(bp)
    app.after_request(add_headers)


def _public_https(app):
    return (app.config.get("FALWEB_PUBLIC_URL") or "").lower().startswith("https://")


def _origin(url):
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def policy(app=None):
    """The Content-Security-Policy for this request, or None when ``FALWEB_CSP`` is "off"."""
    app = app or current_app
    configured = (app.config.get("FALWEB_CSP") or "").strip()
    if configured.lower() == "off":
        return None
    if configured:
        return configured
    extra = []
    for key in ("FALWEB_LOCAL_URL", "FALWEB_LOCAL_PUBLIC_URL"):
        origin = _origin(app.config.get(key))
        if origin and origin not in extra:
            extra.append(origin)
    csp = DEFAULT_CSP
    if extra:
        sources = " ".join(extra)
        csp = csp.replace("img-src 'self'", f"img-src 'self' {sources}")
        csp = csp.replace("media-src 'self'", f"media-src 'self' {sources}")
    return f"{csp}; report-uri {url_for('security.csp_report')}"


def add_headers(response):
    """``after_request``: the security headers, without replacing any a view chose."""
    headers = response.headers
    csp = policy()
    if csp:
        headers.setdefault("Content-Security-Policy", csp)
    for name, value in STATIC_HEADERS.items():
        headers.setdefault(name, value)
    if request.is_secure or _public_https(current_app):
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def _reports(body):
    """The violation reports in a body: ``report-uri``'s ``{"csp-report": {...}}`` or the
    Reporting API's list of ``{"type": "csp-violation", "body": {...}}``."""
    if isinstance(body, dict) and isinstance(body.get("csp-report"), dict):
        return [body["csp-report"]]
    if isinstance(body, list):
        return [item["body"] for item in body if isinstance(item, dict)
                and item.get("type") == "csp-violation" and isinstance(item.get("body"), dict)]
    return []


def _field(report, *names):
    for name in names:
        value = report.get(name)
        if value not in (None, ""):
            return str(value)[:LOGGED_CHARS]
    return "?"


@bp.post("/csp-report")
def csp_report():
    """Count and log a browser's Content-Security-Policy violation report.

    :return: 204.
    :raise 400: the body is not a violation report.
    :raise 413: the body is larger than a report ever is.
    """
    request.max_content_length = MAX_REPORT_BYTES
    try:
        found = _reports(json.loads(request.get_data(cache=False) or b"null"))
    except (ValueError, RecursionError):
        found = []
    if not found:
        return {"error": "not a CSP violation report"}, 400
    counter = current_app.extensions["csp_reports"]
    for report in found:
        counter.add(report)
        # %r: a report's fields come from the page's content and may hold newlines.
        log.warning(
            "CSP violation: %r blocked %r on %r",
            _field(report, "violated-directive", "effective-directive", "effectiveDirective"),
            _field(report, "blocked-uri", "blockedURL"),
            _field(report, "document-uri", "documentURL"),
        )
    return "", 204
