"""Storage (fal-protocol §9, platform notes §1.11): initiate, upload URLs, parts, downloads.

REST side (``/rest/storage/...``, reached from ``rest.fal.ai`` and ``rest.alpha.fal.ai``):
``upload/initiate`` and ``upload/initiate-multipart`` (JS client), ``auth/token`` (Python
client's CDN flow). CDN side (``/cdn/...``, for ``v3.fal.media``): ``PUT uploads/<id>``,
``PUT uploads/<id>/<n>`` + ``POST uploads/<id>/complete``, ``POST files/upload`` and its
multipart variant, and ``GET files/<id>/<name>`` downloads.
"""

import re
from datetime import UTC
from datetime import datetime

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import redirect
from flask import request
from flask import send_file

from falweb.local import errors
from falweb.local.http import base_url
from falweb.local.http import json_body
from falweb.local.http import read_body
from falweb.local.http import runtime
from falweb.local.storage import StorageError
from falweb.local.tokens import TokenError

rest_bp = Blueprint("storage", __name__, url_prefix="/rest/storage")
cdn_bp = Blueprint("cdn", __name__, url_prefix="/cdn")

CHUNK = 1024 * 1024
CDN_TOKEN_SCOPE = "storage"
CDN_TOKEN_SECONDS = 3600


def _storage_error(exc):
    return errors.detail(exc.status, str(exc))


def _body_chunks():
    while chunk := read_body(CHUNK):
        yield chunk


def _file_url(file_id, name):
    return f"{base_url()}/cdn/files/{file_id}/{name}"


def _initiate(multipart):
    data = json_body()
    if not isinstance(data, dict):
        raise errors.body_error("Expected a JSON object", "type_error.dict")
    content_type = data.get("content_type") or "application/octet-stream"
    if not isinstance(content_type, str) or "/" not in content_type or len(content_type) > 200:
        raise errors.validation([{"loc": ["body", "content_type"],
                                  "msg": "content_type must be a MIME type like image/png",
                                  "type": "value_error"}])
    file_name = data.get("file_name")
    if file_name is not None and not isinstance(file_name, str):
        raise errors.validation([{"loc": ["body", "file_name"], "msg": "must be a string",
                                  "type": "type_error.str"}])
    file_id, upload_id, name = runtime().storage.initiate(content_type, file_name, multipart)
    return jsonify({"upload_url": f"{base_url()}/cdn/uploads/{upload_id}",
                    "file_url": _file_url(file_id, name)})


@rest_bp.post("/upload/initiate")
def initiate():
    """``{upload_url, file_url}`` for one PUT; 422 on a bad body."""
    return _initiate(multipart=False)


@rest_bp.post("/upload/initiate-multipart")
def initiate_multipart():
    """``{upload_url, file_url}``; parts go to ``upload_url/<n>``, then ``upload_url/complete``."""
    return _initiate(multipart=True)


@rest_bp.post("/auth/token")
def cdn_token():
    """The Python client's CDN token: ``{token, token_type, base_url, expires_at}``."""
    token = runtime().tokens.issue([CDN_TOKEN_SCOPE], CDN_TOKEN_SECONDS)
    expires = datetime.fromtimestamp(
        datetime.now(UTC).timestamp() + CDN_TOKEN_SECONDS, UTC)
    return jsonify({"token": token, "token_type": "Bearer", "base_url": f"{base_url()}/cdn",
                    "expires_at": expires.isoformat()})


@cdn_bp.put("/uploads/<upload_id>")
def upload(upload_id):
    """Receive the whole file (no credentials: the upload id is the secret); 413 if too big."""
    try:
        runtime().storage.write(upload_id, _body_chunks(), request.content_type,
                                request.content_length)
    except StorageError as exc:
        raise _storage_error(exc) from None
    return jsonify({}), 200


@cdn_bp.put("/uploads/<upload_id>/<int:part_number>")
def upload_part(upload_id, part_number):
    """One part of a multipart upload: ``{"partNumber": n, "etag": "..."}``."""
    try:
        etag = runtime().storage.write_part(upload_id, part_number, _body_chunks(),
                                            request.content_length)
    except StorageError as exc:
        raise _storage_error(exc) from None
    return jsonify({"partNumber": part_number, "etag": etag}), 200, {"ETag": f'"{etag}"'}


@cdn_bp.post("/uploads/<upload_id>/complete")
def complete(upload_id):
    """Join the parts listed in ``{"parts": [{partNumber, etag}]}``; 400 on a bad list."""
    data = json_body()
    parts = data.get("parts") if isinstance(data, dict) else None
    if not isinstance(parts, list):
        raise errors.body_error("Expected {\"parts\": [{\"partNumber\", \"etag\"}]}")
    storage = runtime().storage
    try:
        file_id = storage.complete_multipart(upload_id, parts)
        name = storage.url_name(file_id)
    except StorageError as exc:
        raise _storage_error(exc) from None
    return jsonify({"file_url": _file_url(file_id, name)})


def _check_cdn_token():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise errors.detail(401, "Authorization: Bearer <token> required")
    try:
        runtime().tokens.verify(token, CDN_TOKEN_SCOPE)
    except TokenError as exc:
        raise errors.detail(401, str(exc)) from None


@cdn_bp.post("/files/upload")
def files_upload():
    """Python client's direct upload: raw body → ``{"access_url"}``; 401 without token."""
    _check_cdn_token()
    storage = runtime().storage
    content_type = request.content_type or "application/octet-stream"
    file_id, upload_id, name = storage.initiate(content_type,
                                                request.headers.get("X-Fal-File-Name"))
    try:
        storage.write(upload_id, _body_chunks(), None, request.content_length)
    except StorageError as exc:
        storage.delete(file_id)  # one call, one file: a refused one leaves nothing
        raise _storage_error(exc) from None
    return jsonify({"access_url": _file_url(file_id, name)})


@cdn_bp.post("/files/upload/multipart")
def files_upload_multipart():
    """Start the Python client's multipart flow: ``{"access_url", "uploadId"}``."""
    _check_cdn_token()
    content_type = request.content_type or "application/octet-stream"
    file_id, upload_id, name = runtime().storage.initiate(
        content_type, request.headers.get("X-Fal-File-Name"), multipart=True)
    return jsonify({"access_url": _file_url(file_id, name), "uploadId": upload_id})


@cdn_bp.put("/files/<file_id>/<name>/multipart/<upload_id>/<int:part_number>")
def files_part(file_id, name, upload_id, part_number):
    _check_cdn_token()
    return upload_part(upload_id, part_number)


@cdn_bp.post("/files/<file_id>/<name>/multipart/<upload_id>/complete")
def files_complete(file_id, name, upload_id):
    _check_cdn_token()
    answer = complete(upload_id)
    return jsonify({"access_url": answer.get_json()["file_url"]})


#: Types a browser may show in place: media it renders itself, and plain text. Anything
#: else (HTML, SVG, XML, JavaScript, PDF...) is an attachment: served inline from the app's
#: origin, an uploaded page could script that origin (read its CSRF tokens).
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "image/avif",
                          "video/mp4", "video/webm", "text/plain"})
#: The stored file is a document of its own, never a page of the origin: no script, no
#: plugin, no same-origin access, nothing loaded.
FILE_CSP = "sandbox; default-src 'none'"
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def served_type(content_type):
    """(MIME type to send, inline?) for a stored file's declared content type: the bare
    type (no parameters), ``application/octet-stream`` when it is not a MIME type."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if not _MIME.fullmatch(mime):
        return "application/octet-stream", False
    return mime, mime in INLINE_TYPES or mime.startswith("audio/")


@cdn_bp.get("/files/<file_id>/<name>")
def download(file_id, name):
    """The file with its content type (conditional and range requests work), inline for
    :data:`INLINE_TYPES` and audio, an attachment otherwise; always ``nosniff`` and a
    sandboxing CSP. 404 unknown."""
    storage = runtime().storage
    try:
        path, content_type, file_name, size = storage.get(file_id)
    except StorageError as exc:
        raise _storage_error(exc) from None
    if name != file_name:
        raise errors.detail(404, "File not found")
    mime, inline = served_type(content_type)
    if getattr(storage, "remote", False):
        return _from_object_store(storage, path, mime, inline, file_name, size)
    response = send_file(path, mimetype=mime, conditional=True, max_age=3600,
                         as_attachment=not inline, download_name=file_name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = FILE_CSP
    return response


def _from_object_store(storage, key, mime, inline, file_name, size):
    """A file in the object store (:mod:`falweb.local.s3_storage`): a redirect to a
    presigned URL answered with the same type and disposition, or the object streamed
    through (``FALWEB_STORAGE_DOWNLOADS=stream``), ranges included."""
    disposition = ("inline" if inline else "attachment") + f'; filename="{file_name}"'
    if storage.downloads == "redirect":
        response = redirect(storage.presigned_url(key, mime, disposition), 302)
        response.headers["Cache-Control"] = "private, max-age=600"
        return response
    answer = storage.open(key, request.headers.get("Range"))
    status = answer["ResponseMetadata"]["HTTPStatusCode"]
    headers = {"Content-Type": mime, "Content-Disposition": disposition,
               "Content-Length": str(answer.get("ContentLength", size)),
               "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=3600",
               "X-Content-Type-Options": "nosniff", "Content-Security-Policy": FILE_CSP}
    if answer.get("ContentRange"):
        headers["Content-Range"] = answer["ContentRange"]
    from falweb.local.s3_storage import chunks_of

    return Response(chunks_of(answer["Body"]), status=status, headers=headers,
                    direct_passthrough=True)
