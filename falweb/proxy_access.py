"""falweb's rules for its own credential proxy: who may call it, and whose requests are whose.

:class:`~falweb.proxy.FalProxy` knows nothing of falweb's users; this module plugs the app's
access control into its hooks. The gate (:mod:`falweb.auth`) has already refused callers
without a user; here a queue submit made through the proxy is recorded as its caller's, and
the status, result, stream and cancel of a request are refused to anyone but its owner (or
an admin), in fal's error shape; a caller over a rate limit (:mod:`falweb.limits`) gets
fal's 429 before anything else is looked at.
"""

import re
from urllib.parse import urlsplit

from flask import jsonify

from falweb import auth
from falweb import history
from falweb import limits
from falweb.hosts import QUEUE_URL
from falweb.hosts import hostname

_QUEUE_HOST = hostname(QUEUE_URL)
# /<owner>/<alias>/requests/<request_id>[/status|/status/stream|/cancel]
_REQUEST_PATH = re.compile(r"^/(?:[^/]+/)+requests/(?P<request_id>[^/]+)(?:/|$)")


def _request_id_of(target_url):
    parts = urlsplit(target_url)
    if parts.hostname != _QUEUE_HOST:
        return None
    match = _REQUEST_PATH.match(parts.path)
    return match["request_id"] if match else None


def init_proxy_access(proxy):
    """Register the hooks on ``proxy`` (an app's :class:`~falweb.proxy.FalProxy`)."""

    @proxy.authorize
    def _has_user(request):
        # The gate refused anyone without a user before this view ran.
        return auth.current_user() is not None

    @proxy.before_forward
    def _rate_limited(request, target_url, headers):
        # First: a refused caller's probes of other people's request ids count too.
        return limits.check_proxy_call(request.method, target_url)

    @proxy.before_forward
    def _owner_only(request, target_url, headers):
        request_id = _request_id_of(target_url)
        if request_id is None:
            return None
        owner = auth.users().proxy_request_owner(request_id)
        if owner is None:
            row = history.get(request_id)  # made on the pages
            owner = row["owner"] if row is not None else None
        if owner is not None and auth.can_access(owner):
            return None
        if owner is None and auth.current_user()["admin"]:
            return None  # made by another client of the backend: an admin may look
        # fal's answer for a request it does not know.
        return jsonify({"detail": "Request not found"}), 404

    @proxy.after_response
    def _record_owner(request, target_url, upstream):
        if request.method != "POST" or urlsplit(target_url).hostname != _QUEUE_HOST:
            return
        request_id = upstream.headers.get("x-fal-request-id")
        if upstream.ok and request_id and _request_id_of(target_url) is None:
            auth.users().own_proxy_request(request_id, auth.current_user()["name"])
