"""Security headers on every response of the app, over a real socket, and ``/csp-report``.

A Content-Security-Policy without ``'unsafe-inline'``/``'unsafe-eval'`` only helps if the
pages meet it: these tests also read every page for inline scripts, styles and handlers.
(The browser tests, ``tests/test_browser_csp.py``, prove that Chromium reports nothing.)
"""

import base64
import json
import logging
import re
from html.parser import HTMLParser

import pytest
import requests

from falweb import create_app
from tests.test_pages import add_row

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n0000").decode()

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob: https:",
    "media-src": "'self' data: blob: https:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "object-src": "'none'",
    "report-uri": "/csp-report",
}
REPORT = {"csp-report": {"document-uri": "http://127.0.0.1/history",
                         "violated-directive": "script-src-elem",
                         "blocked-uri": "inline", "line-number": 3}}


def directives(policy):
    return dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())


def assert_secure_headers(response, where):
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (where, name)
    policy = response.headers.get("Content-Security-Policy")
    assert policy, where
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, where
    assert directives(policy) == DIRECTIVES, where
    # Plain http here: HSTS would be ignored at best.
    assert "Strict-Transport-Security" not in response.headers, where


@pytest.fixture
def pages(app, live_server):
    """Every kind of response a person or a script gets from the app: path -> response."""
    add_row(app, "rid-done", result={"images": [{"url": PNG, "content_type": "image/png"}],
                                     "seed": 7})
    add_row(app, "rid-running", status="IN_PROGRESS")
    paths = [
        "/",
        "/models/fal-ai/fast-sdxl",
        "/requests/rid-done",
        "/requests/rid-running",
        "/requests/rid-done/images/0",  # a download
        "/history",
        "/live",
        "/live/fal-ai/fast-lcm-diffusion",
        "/no-such-page",  # the app's 404 page
        "/requests/nope/images/0",  # a download's 404
        "/static/css/app.css",
        "/static/vendor/htmx-2.0.11.min.js",
        "/favicon.ico",
        "/healthz",
        "/api/fal/proxy",  # the proxy's error: no target
    ]
    return {path: requests.get(live_server.url + path, timeout=10, allow_redirects=False)
            for path in paths}


def test_every_response_carries_the_headers(pages, live_server):
    for path, response in pages.items():
        assert_secure_headers(response, path)
    assert pages["/no-such-page"].status_code == 404
    assert pages["/api/fal/proxy"].status_code == 400
    partial = requests.get(live_server.url + "/requests/rid-running/status",
                           headers={"HX-Request": "true"}, timeout=10)
    assert_secure_headers(partial, "status partial")
    posted = requests.post(live_server.url + "/webhooks/fal", data=b"{}", timeout=10)
    assert_secure_headers(posted, "a refused webhook")


class _Inline(HTMLParser):
    """Finds what a strict policy blocks: inline scripts, styles, handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found = []
        self._tag = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._tag = tag
        if tag == "script" and not attrs.get("src"):
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs.items():
            if name == "style" or re.fullmatch(r"on[a-z]+", name):
                self.found.append(f"{tag} {name}={value!r}")
            if name.startswith(("hx-on", "data-hx-on")):
                self.found.append(f"{tag} {name} (htmx evaluates it)")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}={value!r}")

    def handle_endtag(self, tag):
        self._tag = None


def test_pages_have_nothing_inline_for_the_policy_to_block(pages):
    for path, response in pages.items():
        if not response.headers.get("Content-Type", "").startswith("text/html"):
            continue
        parser = _Inline()
        parser.feed(response.text)
        assert parser.found == [], path


def test_htmx_is_configured_for_the_policy(pages):
    page = pages["/"].text
    config = json.loads(re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", page)[1])
    # No <style> of its own, no eval (hx-on, js: values, trigger filters), no <script> from
    # swapped HTML, requests to this origin only.
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert config["selfRequestsOnly"] is True
    assert not config.get("inlineScriptNonce") and not config.get("inlineStyleNonce")
    css = pages["/static/css/app.css"].text
    assert ".htmx-indicator" in css and ".htmx-request .htmx-indicator" in css


def test_hsts_only_over_https(tmp_path):
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "a"),
                      "FALWEB_BACKEND": "local"})
    client = app.test_client()
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", base_url="https://gen.example.com")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    # A forwarded header from anyone does not make a plain request secure (no ProxyFix).
    spoofed = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in spoofed.headers


def test_an_https_public_url_means_hsts_and_secure_cookies(tmp_path):
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "b"),
                      "FALWEB_BACKEND": "local", "FALWEB_PUBLIC_URL": "https://gen.example.com"})
    client = app.test_client()
    page = client.get("/models/fal-ai/fast-sdxl")  # the CSRF token starts a session
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookie = page.headers["Set-Cookie"]
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie


def test_session_cookie_is_lax_and_http_only(app, client):
    cookie = client.get("/models/fal-ai/fast-sdxl").headers["Set-Cookie"]
    assert "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
    assert "; Secure" not in cookie  # plain http, no https public URL: it must still work


def test_the_users_own_cookie_settings_are_kept(tmp_path):
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "c"),
                      "FALWEB_BACKEND": "local", "SESSION_COOKIE_SAMESITE": "Strict"})
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict"


def test_policy_can_be_replaced_or_turned_off(tmp_path):
    custom = "default-src 'self'; img-src *"
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "d"),
                      "FALWEB_BACKEND": "local", "FALWEB_CSP": custom})
    assert app.test_client().get("/").headers["Content-Security-Policy"] == custom
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "e"),
                      "FALWEB_BACKEND": "local", "FALWEB_CSP": "off"})
    answer = app.test_client().get("/")
    assert "Content-Security-Policy" not in answer.headers
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_a_runtime_elsewhere_may_serve_images(tmp_path):
    # Its file URLs (http://gpu-box:8100/cdn/files/…) are shown as they are.
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "f"),
                      "FALWEB_BACKEND": "local", "FALWEB_LOCAL_URL": "http://gpu-box:8100/"})
    found = directives(app.test_client().get("/healthz").headers["Content-Security-Policy"])
    assert found["img-src"] == "'self' http://gpu-box:8100 data: blob: https:"
    assert found["media-src"] == "'self' http://gpu-box:8100 data: blob: https:"
    assert found["script-src"] == "'self'"


# -- /csp-report ----------------------------------------------------------------------------


def test_reports_are_counted_and_logged(app, live_server, caplog):
    counter = app.extensions["csp_reports"]
    with caplog.at_level(logging.WARNING, logger="falweb.csp"):
        answer = requests.post(live_server.url + "/csp-report", data=json.dumps(REPORT),
                               headers={"Content-Type": "application/csp-report"}, timeout=10)
    assert answer.status_code == 204
    assert counter.count == 1
    lines = [record.getMessage() for record in caplog.records if record.name == "falweb.csp"]
    assert len(lines) == 1 and "script-src-elem" in lines[0] and "inline" in lines[0]
    # The Reporting API's shape counts too, one per report.
    batch = [{"type": "csp-violation", "body": {"effectiveDirective": "img-src",
                                               "blockedURL": "http://x/\nforged line"}}] * 2
    answer = requests.post(live_server.url + "/csp-report", json=batch, timeout=10,
                           headers={"Content-Type": "application/reports+json"})
    assert answer.status_code == 204 and counter.count == 3
    # A report's text cannot start a log line of its own.
    assert all("\n" not in record.getMessage() for record in caplog.records)


def test_what_is_not_a_report_is_refused(app, live_server):
    counter = app.extensions["csp_reports"]
    for body in (b"", b"not json", b"{}", b'[{"type": "deprecation", "body": {}}]'):
        answer = requests.post(live_server.url + "/csp-report", data=body, timeout=10)
        assert answer.status_code == 400, body
    huge = json.dumps({"csp-report": {"blocked-uri": "x" * 100_000}})
    answer = requests.post(live_server.url + "/csp-report", data=huge, timeout=10)
    assert answer.status_code == 413
    assert counter.count == 0


def test_reports_need_no_csrf_token(tmp_path):
    # Even with CSRF checked on every view, the report endpoint takes browsers' reports.
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "g"),
                      "FALWEB_BACKEND": "local", "WTF_CSRF_CHECK_DEFAULT": True})
    client = app.test_client()
    answer = client.post("/csp-report", data=json.dumps(REPORT),
                         content_type="application/csp-report")
    assert answer.status_code == 204
    assert app.extensions["csp_reports"].count == 1
    # ...while a page's form still needs its token.
    assert client.post("/models/fal-ai/fast-sdxl", data={"prompt": "x"}).status_code == 400
