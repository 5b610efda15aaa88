"""Small helpers for views that answer both htmx and plain browser requests."""

from flask import Response
from flask import redirect as _redirect
from flask import request

# htmx cancels an element's polling when a poll answers with this status.
HTMX_STOP_POLLING = 286


def is_htmx():
    """True when the current request was made by htmx (and is not a history restore)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def vary(response):
    """Add ``HX-Request`` to ``Vary``: caches must keep the partial and the full page apart."""
    response.vary.add("HX-Request")
    return response


def redirect(location):
    """A 303 to ``location`` for plain posts; for htmx, ``HX-Redirect`` (a full page load)."""
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = location
    else:
        response = _redirect(location, code=303)
    return vary(response)
