"""fal storage: ``upload()`` and the automatic upload of binary inputs (fal-protocol §9).

The JS client's flow: initiate the upload with the REST API (authenticated, through the
proxy when there is one), then ``PUT`` the bytes straight to the returned ``upload_url``
(never through the proxy, never with the key). Above 90 MiB: ``initiate-multipart`` and
sequential 10 MiB parts, then ``complete``. Files are streamed from disk; at most one part
is ever held in memory.
"""

import io
import mimetypes
import os
import pathlib
import time
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from falweb.client.effects import Call
from falweb.client.encoding import image_bytes
from falweb.client.encoding import is_image
from falweb.client.errors import ApiError
from falweb.client.errors import FalError
from falweb.hosts import REST_URL

MULTIPART_THRESHOLD = 90 * 1024 * 1024
MULTIPART_CHUNK_SIZE = 10 * 1024 * 1024
PART_ATTEMPTS = 3
STORAGE_TYPE = "fal-cdn-v3"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class UploadError(FalError):
    """A multipart part could not be uploaded after every attempt."""


def guess_content_type(name):
    """The MIME type for a file name (``mimetypes``), else ``application/octet-stream``."""
    if name:
        guessed, _ = mimetypes.guess_type(str(name))
        if guessed:
            return guessed
    return DEFAULT_CONTENT_TYPE


def default_file_name(content_type):
    """``<milliseconds>.<ext>`` with the JS client's extension rule (``image/png`` → ``png``)."""
    subtype = content_type.split("/", 1)[1] if "/" in content_type else "bin"
    ext = subtype.split("-")[0].split(";")[0] or "bin"
    return f"{int(time.time() * 1000)}.{ext}"


def is_binary_input(value):
    """True for what :func:`transform_input` uploads: bytes-likes, file objects, paths."""
    return isinstance(value, bytes | bytearray | memoryview | pathlib.PurePath) or (
        hasattr(value, "read") and callable(value.read)
    )


class _Source:
    """What to upload: a bytes buffer, or a file object (ours to close when we opened it)."""

    def __init__(self, data, file_name):
        self.owned = False
        self.name = file_name
        self.buffer = None
        self.file = None
        self._offset = 0
        if isinstance(data, bytes | bytearray | memoryview):
            self.buffer = memoryview(data).cast("B")
            self.size = self.buffer.nbytes
        elif isinstance(data, str | os.PathLike):
            path = pathlib.Path(data)
            if not path.is_file():
                raise FileNotFoundError(f"no such file to upload: {path}")
            self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
            self.owned = True
            self.name = self.name or path.name
            self.size = os.fstat(self.file.fileno()).st_size
        elif hasattr(data, "read"):
            self.file = data
            self.name = self.name or _file_object_name(data)
            self.size = remaining_size(data)
        else:
            raise TypeError(
                f"cannot upload {type(data).__name__}: pass bytes, a path or a binary file object"
            )

    def read(self, size):
        if self.buffer is not None:
            start = self._offset
            self._offset = start + size
            return bytes(self.buffer[start:start + size])
        chunk = self.file.read(size)
        if isinstance(chunk, str):
            raise TypeError("cannot upload a text-mode file: open it in binary mode ('rb')")
        return chunk or b""

    def body(self):
        """A body for one PUT: the bytes, or the file object (requests streams it)."""
        if self.buffer is not None:
            return self.buffer.obj if isinstance(self.buffer.obj, bytes) else self.buffer.tobytes()
        if isinstance(self.file, io.TextIOBase):
            raise TypeError("cannot upload a text-mode file: open it in binary mode ('rb')")
        return self.file

    def close(self):
        if self.owned:
            self.file.close()


def _file_object_name(file):
    name = getattr(file, "name", None)
    return os.path.basename(name) if isinstance(name, str) and name else None


def remaining_size(file):
    """Bytes left to read in a binary file object, or None when it cannot tell."""
    # None when the stream cannot tell (pipes, sockets): then we read it part by part.
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        if file.seekable():
            here = file.tell()
            end = file.seek(0, io.SEEK_END)
            file.seek(here)
            return end - here
    except (AttributeError, OSError, ValueError):
        pass
    return None


def _part_url(upload_url, suffix):
    parts = urlsplit(upload_url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + suffix,
                       parts.query, ""))


def _initiate_plan(kind, content_type, file_name, headers):
    answer = yield Call("POST", f"{REST_URL}/storage/upload/{kind}?storage_type={STORAGE_TYPE}",
                        input={"content_type": content_type, "file_name": file_name},
                        headers=headers)
    body = answer.body
    if not isinstance(body, dict) or "upload_url" not in body or "file_url" not in body:
        raise ApiError("storage initiate answered without upload_url/file_url", 200, body)
    return body["upload_url"], body["file_url"]


def upload_plan(data, content_type=None, file_name=None, lifecycle=None):
    source = _Source(data, file_name)
    try:
        content_type = content_type or guess_content_type(source.name)
        name = source.name or default_file_name(content_type)
        headers = {"X-Fal-Object-Lifecycle": _json(lifecycle)} if lifecycle else None
        if source.size is not None and source.size <= MULTIPART_THRESHOLD:
            upload_url, file_url = yield from _initiate_plan("initiate", content_type, name,
                                                             headers)
            yield Call("PUT", upload_url, direct=True, data=source.body(),
                       headers={"Content-Type": content_type})
            return file_url
        return (yield from _multipart_plan(source, content_type, name, headers))
    finally:
        source.close()


def _multipart_plan(source, content_type, file_name, headers):
    upload_url, file_url = yield from _initiate_plan("initiate-multipart", content_type,
                                                     file_name, headers)
    parts = []
    number = 1
    while True:
        chunk = source.read(MULTIPART_CHUNK_SIZE)
        if not chunk and number > 1:
            break
        parts.append((yield from _part_plan(upload_url, number, chunk)))
        if len(chunk) < MULTIPART_CHUNK_SIZE:
            break
        number += 1
    yield Call("POST", _part_url(upload_url, "complete"), direct=True,
               data=_json({"parts": parts}).encode(),
               headers={"Content-Type": "application/json"})
    return file_url


def _part_plan(upload_url, number, chunk):
    last_error = None
    for _ in range(PART_ATTEMPTS):
        try:
            answer = yield Call("PUT", _part_url(upload_url, str(number)), direct=True,
                                data=chunk)
        except FalError as exc:
            last_error = exc
            continue
        body = answer.body
        if isinstance(body, dict) and "etag" in body:
            return {"partNumber": body.get("partNumber", number), "etag": body["etag"]}
        last_error = ApiError("part upload answered without an etag", answer.status, body)
    raise UploadError(f"Part {number} upload failed, retries exhausted: {last_error}")


def transform_input_plan(value):
    """``value`` with every binary leaf uploaded and replaced by its URL (a plan)."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            result[key] = yield from transform_input_plan(item)
        return result
    if isinstance(value, list | tuple):
        result = []
        for item in value:
            result.append((yield from transform_input_plan(item)))
        return result
    if is_image(value):
        return (yield from upload_plan(*image_bytes(value)))
    if is_binary_input(value):
        return (yield from upload_plan(value))
    return value


class Storage:
    """``fal.storage``: ``upload()`` and ``transform_input()`` for one client. With
    :class:`~falweb.client.AsyncClient` the methods return coroutines."""

    def __init__(self, client):
        self._client = client

    def _run(self, plan):
        return self._client.transport.run(plan)

    def upload(self, data, content_type=None, file_name=None, *, lifecycle=None):
        """Upload ``data`` to fal storage and return its public URL (``file_url``).

        ``data``: bytes-like, a path (``str`` or ``pathlib.Path``) or a binary file object
        (read from its current position). ``content_type`` defaults to a guess from the file
        name, else ``application/octet-stream``; ``file_name`` to the path's/file's name,
        else ``<ms>.<ext>``. ``lifecycle`` (a dict such as
        ``{"expiration_duration_seconds": 3600}``) is sent as ``X-Fal-Object-Lifecycle``.
        Raises :class:`ApiError`, :class:`UploadError`, :class:`FalConnectionError`,
        ``FileNotFoundError``, ``TypeError``.
        """
        return self._run(upload_plan(data, content_type, file_name, lifecycle))

    def upload_file(self, path, *, lifecycle=None):
        """Upload the file at ``path`` (its type guessed from its name); fal's name."""
        return self.upload(pathlib.Path(path), lifecycle=lifecycle)

    def upload_image(self, image, format="jpeg", *, lifecycle=None):
        """Upload a PIL image, encoded as ``format`` (``jpeg``, ``png``, ``webp``...);
        fal's name. Returns the URL."""
        data, content_type, name = image_bytes(image, format)
        return self.upload(data, content_type, name, lifecycle=lifecycle)

    def transform_input(self, value):
        """``value`` with every binary leaf uploaded and replaced by its URL.

        Walks dicts, lists and tuples; bytes-likes, file objects, ``pathlib`` paths and PIL
        images (as PNG) are uploaded (a plain ``str`` is never read as a path, so data URIs
        and URLs pass through untouched). Returns a new structure; the input is not
        modified.
        """
        return self._run(transform_input_plan(value))

    transform_input_plan = staticmethod(transform_input_plan)


def _json(value):
    import json

    return json.dumps(value, separators=(",", ":"))
