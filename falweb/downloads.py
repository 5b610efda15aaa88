"""``GET /requests/<request_id>/images/<index>``: an image of a finished request as a file.

A browser's ``download`` attribute only works for same-origin URLs, and fal's images live on
its CDN, so the app relays them with ``Content-Disposition: attachment``. Results come from a
backend or a webhook, so their URLs are data, not orders: the app fetches only a local
runtime's file (``<base>/cdn/files/<file_id>/<name>`` exactly, rebuilt on the runtime's base
URL, so no ``..`` or encoded path reaches it), https URLs on fal's own hosts, and data URIs in
the stored result. Any other URL is answered 404, never fetched and never redirected to (the
request page still links it, when it is http(s)).
"""

import base64
import binascii
import re
from urllib.parse import urlsplit

import requests
from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import stream_with_context

from falweb import auth
from falweb import backend
from falweb import history
from falweb.client.outputs import output_file_name
from falweb.hosts import is_fal_host

bp = Blueprint("downloads", __name__)

CHUNK = 64 * 1024


def init_app(app):
    app.register_blueprint(bp)


# What the local runtime's storage names a file: an alphanumeric id and a name of letters,
# digits, ".", "_" and "-" that starts with a letter or digit (so never "." or "..").
_LOCAL_FILE = re.compile(r"/cdn/files/[A-Za-z0-9]+/[A-Za-z0-9][A-Za-z0-9._-]*")


def _local_file(url):
    """The URL to fetch for a local runtime's file URL, or None for any other URL.

    The runtime writes its file URLs on its base URL (or ``FALWEB_LOCAL_PUBLIC_URL``); what
    follows that base must be exactly ``/cdn/files/<file_id>/<name>``, checked on the raw
    text: no dot segments, percent-escapes, backslashes, query or fragment.
    """
    base = backend.local_base()
    if not base:
        return None
    for known in (base, current_app.config.get("FALWEB_LOCAL_PUBLIC_URL")):
        known = (known or "").rstrip("/")
        if known and url.startswith(known + "/cdn/files/"):
            path = url[len(known):]
            if _LOCAL_FILE.fullmatch(path):
                return base.rstrip("/") + path
    return None


def _on_fal(url):
    """True for an https URL on one of fal's hosts (its CDN, say), on the default port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme == "https" and port is None and parts.username is None
            and parts.password is None and "\\" not in parts.netloc
            and is_fal_host(parts.hostname))


def _image_type(content_type, fallback):
    # The file is an attachment either way; a type that is no image is not announced as one.
    content_type = (content_type or "").split(";")[0].strip().lower() or fallback
    return content_type if content_type.startswith("image/") else "application/octet-stream"


@bp.get("/requests/<request_id>/images/<int:index>")
def image(request_id, index):
    """The image as an attachment named ``<request_id>-<index>.<ext>``.

    :raise 404: unknown request, no such image, the image is gone upstream, or its URL is
        on a host the server does not fetch from (the request page links it instead).
    """
    row = history.get(request_id)
    if row is not None and not auth.can_access(row["owner"]):
        row = None
    images = (row or {}).get("result") or {}
    images = images.get("images") if isinstance(images, dict) else None
    if not isinstance(images, list) or not 0 <= index < len(images):
        abort(404, description="No such image.")
    entry = images[index] if isinstance(images[index], dict) else {}
    url = entry.get("url")
    if not isinstance(url, str):
        abort(404, description="No such image.")
    content_type = entry.get("content_type") or "image/jpeg"
    name = output_file_name(request_id, index, content_type, url)
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if url.startswith("data:"):
        head, _, payload = url.partition(",")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            abort(404, description="The stored image is not valid Base64.")
        return Response(data, mimetype=_image_type(head[5:], content_type), headers=headers)
    local = _local_file(url)
    fetch = local or (url if _on_fal(url) else None)
    if fetch is None:
        # Not a redirect: that would make this app's address a link to anywhere.
        abort(404, description="This image is not on the local runtime or fal's CDN, so it "
                               "cannot be downloaded through this app. Open it from the "
                               "request page instead.")
    session = backend.session()
    try:
        upstream = session.get(fetch, stream=True, allow_redirects=False,
                               timeout=current_app.config["FALWEB_HTTP_TIMEOUT"])
        if local and upstream.status_code in (302, 303, 307) and \
                upstream.headers.get("Location", "").startswith(("https://", "http://")):
            # The runtime keeps its files in an object store (FALWEB_STORAGE_URL) and sends
            # clients to a presigned URL: the runtime's own answer, not the result's data,
            # so it is followed, once.
            location = upstream.headers["Location"]
            upstream.close()
            upstream = session.get(location, stream=True, allow_redirects=False,
                                   timeout=current_app.config["FALWEB_HTTP_TIMEOUT"])
    except requests.RequestException:
        session.close()
        abort(404, description="The image cannot be fetched right now.")
    if upstream.status_code != 200:
        upstream.close()
        session.close()
        abort(404, description="The image is no longer available.")

    def body():
        with session, upstream:
            yield from upstream.iter_content(CHUNK)

    return Response(stream_with_context(body()),
                    mimetype=_image_type(upstream.headers.get("Content-Type"), content_type),
                    headers=headers)
