"""URLs as a page may show them: only safe schemes in ``href``/``src``
(:func:`safe_url`), and the embedded runtime's files by this app's own path
(:func:`browser_url`)."""

import re
from urllib.parse import urlsplit

from flask import request

from falweb import backend

# What browsers drop from a URL before reading its scheme: tabs and newlines anywhere,
# C0 controls and spaces at either end (so "java\tscript:" is still javascript:).
_URL_IGNORED = re.compile(r"[\t\n\r]")
_URL_EDGES = "".join(chr(code) for code in range(0x21))
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def safe_url(value):
    """``value`` when a page may put it in ``href``/``src``, else "".

    Results and history come from a backend (or a webhook), not from this app: only
    http(s) URLs, ``data:image/*`` and this site's own paths pass; ``javascript:``,
    ``vbscript:``, other ``data:`` and every other scheme become "".
    """
    if not isinstance(value, str):
        return ""
    url = _URL_IGNORED.sub("", value).strip(_URL_EDGES)
    scheme = _SCHEME.match(url)
    if scheme is None:
        # No scheme: a path on this site ("/local/cdn/…"), or "//host/…" on this page's scheme.
        return url if url.startswith("/") else ""
    scheme = scheme.group(1).lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "data" and url[5:].lstrip().lower().startswith("image/"):
        return url
    return ""


def browser_url(url):
    """``url`` as this page's browser should fetch it.

    The embedded runtime names its files by the address the server is bound to (often
    127.0.0.1), which a browser on another machine cannot reach; its own path on this app
    works from anywhere, and survives the app moving to another port.
    """
    if backend.local_app() is None:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[" and the like, from a backend: shown as text only
        return url
    mount = request.script_root + backend.LOCAL_MOUNT + "/"
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme in ("http", "https") and parts.path.startswith(mount):
        if loopback or parts.netloc == request.host:
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return url
