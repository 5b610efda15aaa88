"""``GET /requests/<request_id>/images/<index>``: an image of a finished request as a file.

A browser's ``download`` attribute only works for same-origin URLs, and fal's images live on
its CDN, so the app relays them with ``Content-Disposition: attachment``. The app fetches
only from places it already trusts: its local runtime, fal's own hosts, and data URIs in the
stored result. Any other URL is handed to the browser as a redirect, never fetched here.
"""

import base64
import binascii
from urllib.parse import urlsplit

import requests
from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import redirect
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


def _trusted(url):
    """True for URLs the server may fetch on a browser's behalf."""
    base = backend.local_base()
    if base and url.startswith(base.rstrip("/") + "/cdn/files/"):
        return True
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme == "https" and parts.port is None and parts.username is None and (
        is_fal_host(host))


@bp.get("/requests/<request_id>/images/<int:index>")
def image(request_id, index):
    """The image as an attachment named ``<request_id>-<index>.<ext>``; a redirect for URLs
    on other hosts.

    :raise 404: unknown request, no such image, or the image is gone upstream.
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
        return Response(data, mimetype=head[5:].split(";")[0] or content_type, headers=headers)
    if not _trusted(url):
        return redirect(url)
    session = backend.session()
    try:
        upstream = session.get(url, stream=True, allow_redirects=False,
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
                    mimetype=upstream.headers.get("Content-Type", content_type), headers=headers)
