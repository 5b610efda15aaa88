"""The storage service's state and rules: initiate, upload (single or multipart), read.

Files live under ``<instance>/files/<file_id>/``; their metadata in SQLite. An upload id is
an unguessable random token, which is what lets the upload URL take a PUT without
credentials (fal's signed upload URLs play that part). Sizes above ``max_bytes`` are refused
with :class:`TooLarge`, checked while streaming, so a liar's Content-Length cannot fill the disk.
"""

import hashlib
import mimetypes
import os
import re
import secrets
import shutil
import time

CHUNK = 1024 * 1024
PART_LIMIT = 10_000


class StorageError(Exception):
    status = 400


class NotFound(StorageError):
    status = 404


class TooLarge(StorageError):
    status = 413


def safe_file_name(name, content_type):
    """A file name that is safe in a URL path segment and on disk."""
    name = os.path.basename((name or "").replace("\\", "/"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:120]
    if not name:
        ext = mimetypes.guess_extension(content_type or "") or ".bin"
        name = f"{int(time.time() * 1000)}{ext}"
    return name


class Storage:
    def __init__(self, db, root, max_bytes):
        self.db = db
        self.root = root
        self.max_bytes = int(max_bytes)
        os.makedirs(root, exist_ok=True)

    def _dir(self, file_id):
        return os.path.join(self.root, file_id)

    def initiate(self, content_type, file_name, multipart=False):
        """A new empty file; returns (file_id, upload_id, file_name)."""
        content_type = content_type or "application/octet-stream"
        file_name = safe_file_name(file_name, content_type)
        file_id = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        upload_id = secrets.token_urlsafe(24)
        os.makedirs(self._dir(file_id), exist_ok=True)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO files (file_id, file_name, content_type, upload_id, multipart,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (file_id, file_name, content_type, upload_id, int(multipart), time.time()),
            )
        return file_id, upload_id, file_name

    def save(self, data, content_type, file_name):
        """Store ``data`` at once (engine outputs); returns (file_id, file_name)."""
        file_id, upload_id, file_name = self.initiate(content_type, file_name)
        self.write(upload_id, _chunks(data), content_type=None)
        return file_id, file_name

    def _by_upload(self, upload_id):
        row = self.db.connect().execute(
            "SELECT * FROM files WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        if row is None:
            raise NotFound("Unknown upload URL")
        return row

    def _stream_to(self, path, chunks, limit):
        size = 0
        digest = hashlib.md5(usedforsecurity=False)
        tmp = path + ".part"
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return size, digest.hexdigest()

    def write(self, upload_id, chunks, content_type=None, length=None):
        """Single upload: the whole body at once. Returns the file row's id."""
        row = self._by_upload(upload_id)
        if length is not None and length > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        size, _ = self._stream_to(os.path.join(self._dir(row["file_id"]), "data"), chunks,
                                  self.max_bytes)
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE files SET size = ?, complete = 1, content_type = ? WHERE file_id = ?",
                (size, _pick_content_type(row["content_type"], content_type), row["file_id"]),
            )
        return row["file_id"]

    def write_part(self, upload_id, part_number, chunks, length=None):
        """One multipart part; returns its etag."""
        row = self._by_upload(upload_id)
        if not 1 <= part_number <= PART_LIMIT:
            raise StorageError(f"partNumber must be between 1 and {PART_LIMIT}")
        if length is not None and length > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        parts = os.path.join(self._dir(row["file_id"]), "parts")
        os.makedirs(parts, exist_ok=True)
        _, etag = self._stream_to(os.path.join(parts, str(part_number)), chunks, self.max_bytes)
        return etag

    def complete_multipart(self, upload_id, parts):
        """Join the listed parts in order; each etag must match. Returns the file id."""
        row = self._by_upload(upload_id)
        folder = self._dir(row["file_id"])
        numbers = []
        for part in parts:
            try:
                number, etag = int(part["partNumber"]), str(part.get("etag", ""))
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
                # OverflowError: a JSON number too big for a float arrives as infinity.
                raise StorageError("Each part needs partNumber and etag") from None
            if not 1 <= number <= PART_LIMIT:
                raise StorageError(f"partNumber must be between 1 and {PART_LIMIT}")
            numbers.append((number, etag))
        if not numbers:
            raise StorageError("No parts to complete")
        total = 0
        for number, _ in numbers:
            path = os.path.join(folder, "parts", str(number))
            if not os.path.exists(path):
                raise StorageError(f"Part {number} was not uploaded")
            total += os.path.getsize(path)
        if total > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        tmp = os.path.join(folder, "data.part")
        with open(tmp, "wb") as out:
            for number, etag in sorted(numbers):
                path = os.path.join(folder, "parts", str(number))
                digest = hashlib.md5(usedforsecurity=False)
                with open(path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                if etag and etag.strip('"') != digest.hexdigest():
                    os.remove(tmp)
                    raise StorageError(f"Part {number}: etag does not match")
        os.replace(tmp, os.path.join(folder, "data"))
        shutil.rmtree(os.path.join(folder, "parts"), ignore_errors=True)
        with self.db.transaction() as conn:
            conn.execute("UPDATE files SET size = ?, complete = 1 WHERE file_id = ?",
                         (total, row["file_id"]))
        return row["file_id"]

    def get(self, file_id):
        """(path, content_type, file_name, size) of a complete file; NotFound otherwise."""
        row = self.db.connect().execute(
            "SELECT * FROM files WHERE file_id = ? AND complete = 1", (file_id,)
        ).fetchone()
        if row is None:
            raise NotFound("File not found")
        path = os.path.join(self._dir(file_id), "data")
        return path, row["content_type"], row["file_name"], row["size"]

    def url_name(self, file_id):
        row = self.db.connect().execute(
            "SELECT file_name FROM files WHERE file_id = ?", (file_id,)
        ).fetchone()
        if row is None:
            raise NotFound("File not found")
        return row["file_name"]


def _pick_content_type(initiated, sent):
    # The initiate call names the type; a PUT may refine a generic one.
    if initiated == "application/octet-stream" and sent:
        return sent
    return initiated


def _chunks(data):
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]
