"""The local-uploader socket that hosted apps upload their output files to.

fal's SDK, given ``FAL_USE_LOCAL_UPLOADER=1`` and ``FAL_API_SOCKET``, sends an app's output
files to an uploader on a unix socket instead of fal's CDN (fal-apps.md, "Files"). This is
that uploader: it stores the bytes in the runtime's storage at once, so the URL it answers
with is the runtime's own file URL, ready to download. Both of the SDK's flows:

- single: ``POST /v1/uploads`` (the body) → 202 ``accepted_local``;
- session: ``POST /v1/upload-sessions`` → 201 ``receiving`` (the URL is known before the
  bytes), ``PUT …/body``, ``POST …/finish`` → 202 ``accepted_local``; ``DELETE`` aborts.

``GET /v1/uploads/<id>`` answers ``completed``: a stored file is as final as it gets here.
Only processes that can open the socket (its folder is private to this user) reach it.
"""

import collections
import logging
import mimetypes
import os
import threading

from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.serving import make_server

from falweb.local.storage import NotFound
from falweb.local.storage import StorageError
from falweb.local.storage import StorageFull
from falweb.local.storage import TooLarge
from falweb.serving import QuietRequestHandler

log = logging.getLogger("falweb.local.apps")

CHUNK = 64 * 1024
DONE_KEPT = 10000


class _Recent(collections.OrderedDict):
    """A dict that forgets its oldest entries past ``limit``."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        while len(self) > self.limit:
            self.popitem(last=False)


def _content_type(file_name):
    sent = request.mimetype
    if sent and sent not in ("application/octet-stream", ""):
        return sent
    return mimetypes.guess_type(file_name or "")[0] or "application/octet-stream"


def _chunks():
    while chunk := request.stream.read(CHUNK):
        yield chunk


def create_uploader_app(storage, base_url_for):
    """The uploader's WSGI app over ``storage``; ``base_url_for(request_id)`` is the base
    URL that file URLs of that request start with."""
    app = Flask("falweb.local.apps.uploader")
    # upload_id → (file_id, file_name) of files whose bytes arrived (the latest ones: a
    # session's finish and a status check follow its body at once).
    done = _Recent(DONE_KEPT)

    def file_url(file_id, name):
        base = base_url_for(request.headers.get("x-fal-request-id"))
        return f"{base.rstrip('/')}/cdn/files/{file_id}/{name}"

    def refused(exc):
        code = 413 if isinstance(exc, (TooLarge, StorageFull)) else 422
        if isinstance(exc, NotFound):
            code = 404
        return jsonify({"detail": str(exc)}), code

    @app.post("/v1/uploads")
    def single():
        name = request.headers.get("x-fal-file-name") or "file"
        file_id, upload_id, name = storage.initiate(_content_type(name), name)
        try:
            storage.write(upload_id, _chunks(), length=request.content_length)
        except StorageError as exc:
            storage.delete(file_id)
            return refused(exc)
        done[upload_id] = (file_id, name)
        return jsonify({"state": "accepted_local", "upload_id": upload_id,
                        "file_url": file_url(file_id, name)}), 202

    @app.get("/v1/uploads/<upload_id>")
    def state(upload_id):
        if upload_id not in done:
            return jsonify({"detail": "unknown upload"}), 404
        return jsonify({"state": "completed", "upload_id": upload_id})

    @app.post("/v1/upload-sessions")
    def open_session():
        name = request.headers.get("x-fal-file-name") or "file"
        file_id, upload_id, name = storage.initiate(_content_type(name), name)
        return jsonify({"state": "receiving", "upload_id": upload_id,
                        "file_url": file_url(file_id, name)}), 201

    @app.put("/v1/upload-sessions/<upload_id>/body")
    def session_body(upload_id):
        try:
            file_id = storage.write(upload_id, _chunks(), length=request.content_length)
        except StorageError as exc:
            return refused(exc)
        done[upload_id] = (file_id, storage.url_name(file_id))
        return "", 204

    @app.post("/v1/upload-sessions/<upload_id>/finish")
    def finish(upload_id):
        if upload_id not in done:
            return jsonify({"detail": "no body was sent for this session"}), 422
        file_id, name = done[upload_id]
        return jsonify({"state": "accepted_local", "upload_id": upload_id,
                        "file_url": file_url(file_id, name)}), 202

    @app.delete("/v1/upload-sessions/<upload_id>")
    def abort(upload_id):
        entry = done.pop(upload_id, None)
        if entry is not None:
            storage.delete(entry[0])
        return jsonify({"state": "deleted"}), 202

    return app


class UploaderSocket:
    """The uploader served on a unix socket at ``path`` in a background thread."""

    def __init__(self, path, storage, base_url_for):
        if os.path.exists(path):
            os.unlink(path)
        app = create_uploader_app(storage, base_url_for)
        self.path = path
        self.server = make_server(f"unix://{path}", 0, app, threaded=True,
                                  request_handler=QuietRequestHandler)
        os.chmod(path, 0o600)
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="falweb-apps-uploader", daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        try:
            os.unlink(self.path)
        except OSError:
            pass
