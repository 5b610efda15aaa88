"""Stored files in an S3-compatible object store, their rows in PostgreSQL.

The same service as :class:`~falweb.local.storage.Storage` (same rows, limits, upload URLs
and answers); only where the bytes go differs. A body is spooled while its limits are
checked (no object is written for a refused upload), then put under a fresh key
``<prefix><file_id>/<random>``; the row names the key once the transaction that checks the
cap commits, and the object it replaces is deleted after. Nothing holds a lock while bytes
move. Multipart uploads map onto S3's own: the first part creates the store's upload (its
id kept in the row), each part is an ``UploadPart``, and ``complete`` is
``CompleteMultipartUpload`` with the parts the client listed. S3 needs every part but the
last to be at least 5 MiB; fal's clients send larger ones.

Downloads (:mod:`falweb.local.storage_api`) redirect to a presigned URL, or stream the
object through when ``FALWEB_STORAGE_DOWNLOADS=stream`` (a store clients cannot reach).
"""

import logging
import secrets
import tempfile

from falweb.local.storage import CHUNK
from falweb.local.storage import PART_LIMIT
from falweb.local.storage import UPLOAD_EXPIRY_SECONDS
from falweb.local.storage import NotFound
from falweb.local.storage import Storage
from falweb.local.storage import StorageError
from falweb.local.storage import TooLarge
from falweb.local.storage import _pick_content_type
from falweb.local.storage import listed_parts
from falweb.store import s3
from falweb.store.settings import SettingError

log = logging.getLogger("falweb.local.storage")

#: Bodies up to this size are spooled in memory, larger ones in a temporary file.
SPOOL_MEMORY = 8 * 1024 * 1024
#: Seconds a presigned download URL stays valid.
PRESIGN_SECONDS = 3600
DOWNLOAD_MODES = ("redirect", "stream")


class S3Storage(Storage):
    """Files in ``bucket`` under ``prefix``; rows in ``db`` (PostgreSQL)."""

    remote = True

    def __init__(self, db, location, config, max_bytes, max_storage=0):
        if db.dialect != "postgres":
            raise SettingError("FALWEB_STORAGE_URL needs FALWEB_DATABASE_URL: every host that "
                               "serves the files must share their rows")
        mode = (config.get("FALWEB_STORAGE_DOWNLOADS") or "redirect").strip().lower()
        if mode not in DOWNLOAD_MODES:
            raise SettingError(f"FALWEB_STORAGE_DOWNLOADS must be 'redirect' or 'stream', "
                               f"not {mode!r}")
        self.db = db
        self.root = None
        self.bucket, self.prefix = location
        self.downloads = mode
        self.max_bytes = int(max_bytes)
        self.max_storage = int(max_storage or 0)
        self.client = s3.client_from(config)
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (s3.ClientError, s3.BotoCoreError) as exc:
            raise SettingError(f"FALWEB_STORAGE_URL: bucket {self.bucket!r} cannot be reached "
                               f"({s3.error_code(exc) or type(exc).__name__})") from None

    def _new_key(self, file_id):
        return f"{self.prefix}{file_id}/{secrets.token_hex(8)}"

    def _spool(self, chunks, room):
        """The body in a spooled temporary file (rewound), and its size."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        size = 0
        try:
            for chunk in self._limited(chunks, room):
                size += len(chunk)
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, size

    def _delete_objects(self, keys):
        keys = [key for key in keys if key]
        for start in range(0, len(keys), 1000):
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in keys[start:start + 1000]],
                    "Quiet": True})
            except (s3.ClientError, s3.BotoCoreError) as exc:
                # The sweep deletes what stays behind once no row names it.
                log.warning("deleting %d objects failed (%s)", len(keys), type(exc).__name__)

    def _abort(self, key, s3_upload_id):
        if key and s3_upload_id:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=s3_upload_id)
            except (s3.ClientError, s3.BotoCoreError):
                pass

    # -- single uploads -------------------------------------------------------------------

    # Outputs go to the bucket by the upload path (the folder store's one-transaction save
    # writes to disk).
    save = Storage._save_as_upload

    def write(self, upload_id, chunks, content_type=None, length=None):
        row = self._by_upload(upload_id)
        file_id = row["file_id"]
        room = self._room(freed=row["size"] or 0)
        self._check_length(length, room)
        kind = _pick_content_type(row["content_type"], content_type)
        spool, size = self._spool(chunks, room)
        key = self._new_key(file_id)
        with spool:
            self.client.upload_fileobj(spool, self.bucket, key,
                                       ExtraArgs={"ContentType": kind})
        old = None
        try:
            with self.db.transaction() as conn:
                # The whole file replaces whatever the row counted.
                self._record(conn, file_id, row["size"] or 0, size)
                old = conn.execute("SELECT object_key FROM files WHERE file_id = ?",
                                   (file_id,)).fetchone()["object_key"]
                conn.execute("UPDATE files SET size = ?, complete = 1, content_type = ?,"
                             " object_key = ? WHERE file_id = ?", (size, kind, key, file_id))
        except BaseException:
            self._delete_objects([key])
            raise
        if old and old != key:
            self._delete_objects([old])
        return file_id

    # -- multipart ------------------------------------------------------------------------

    def _multipart(self, file_id, content_type):
        """(key, the store's upload id) of this file's multipart upload, made once."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT object_key, s3_upload_id FROM files WHERE file_id = ?"
                               + self.db.for_update, (file_id,)).fetchone()
            if row is None:
                raise NotFound("Unknown upload URL (it expired)")
            if row["s3_upload_id"]:
                return row["object_key"], row["s3_upload_id"]
            key = self._new_key(file_id)
            made = self.client.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                       ContentType=content_type)
            conn.execute("UPDATE files SET object_key = ?, s3_upload_id = ? WHERE file_id = ?",
                         (key, made["UploadId"], file_id))
            return key, made["UploadId"]

    def write_part(self, upload_id, part_number, chunks, length=None):
        row = self._by_upload(upload_id)
        if not 1 <= part_number <= PART_LIMIT:
            raise StorageError(f"partNumber must be between 1 and {PART_LIMIT}")
        file_id = row["file_id"]
        before = self.db.connect().execute(
            "SELECT size FROM file_parts WHERE file_id = ? AND n = ?",
            (file_id, part_number)).fetchone()
        replaced = before["size"] if before else 0
        room = self._room(freed=replaced)
        self._check_length(length, room)
        spool, size = self._spool(chunks, room)
        key, s3_upload_id = self._multipart(file_id, row["content_type"])
        with spool:
            answer = self.client.upload_part(Bucket=self.bucket, Key=key,
                                             UploadId=s3_upload_id, PartNumber=part_number,
                                             Body=spool)
        etag = answer["ETag"].strip('"')
        with self.db.transaction() as conn:
            current = self._record(conn, file_id, replaced, size)
            conn.execute("INSERT INTO file_parts (file_id, n, size, etag) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT (file_id, n) DO UPDATE SET size = excluded.size,"
                         " etag = excluded.etag", (file_id, part_number, size, etag))
            conn.execute("UPDATE files SET size = ? WHERE file_id = ?",
                         (max(0, current - replaced) + size, file_id))
        return etag

    def complete_multipart(self, upload_id, parts):
        row = self._by_upload(upload_id)
        file_id = row["file_id"]
        listed = {number: etag.strip('"') for number, etag in listed_parts(parts)}
        stored = {r["n"]: r for r in self.db.connect().execute(
            "SELECT n, size, etag FROM file_parts WHERE file_id = ?", (file_id,))}
        total = 0
        for number, etag in listed.items():
            if number not in stored:
                raise StorageError(f"Part {number} was not uploaded")
            if etag and etag != stored[number]["etag"]:
                raise StorageError(f"Part {number}: etag does not match")
            total += stored[number]["size"]
        if total > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=row["object_key"], UploadId=row["s3_upload_id"],
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{stored[n]["etag"]}"'}
                                           for n in sorted(listed)]})
        except s3.ClientError as exc:
            if s3.error_code(exc) == "EntityTooSmall":
                raise StorageError("Every part but the last must be at least 5 MiB "
                                   "(the object store's minimum)") from None
            raise
        with self.db.transaction() as conn:
            current = conn.execute("SELECT size FROM files WHERE file_id = ?"
                                   + self.db.for_update, (file_id,)).fetchone()
            if current is None:
                self._delete_objects([row["object_key"]])
                raise NotFound("Unknown upload URL (it expired)")
            if self.max_storage:
                used = self.used(conn)
                if used - (current["size"] or 0) + total > self.max_storage:
                    self._delete_objects([row["object_key"]])
                    raise self._full(used)
            conn.execute("UPDATE files SET size = ?, complete = 1, s3_upload_id = NULL"
                         " WHERE file_id = ?", (total, file_id))
            conn.execute("DELETE FROM file_parts WHERE file_id = ?", (file_id,))
        return file_id

    # -- reading --------------------------------------------------------------------------

    def get(self, file_id):
        """(object key, content_type, file_name, size) of a complete file."""
        row = self.db.connect().execute(
            "SELECT * FROM files WHERE file_id = ? AND complete = 1", (file_id,)).fetchone()
        if row is None or not row["object_key"]:
            raise NotFound("File not found")
        return row["object_key"], row["content_type"], row["file_name"], row["size"]

    def read(self, file_id):
        key, content_type, _, _ = self.get(file_id)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except s3.ClientError as exc:
            if s3.error_code(exc) in ("NoSuchKey", "404"):
                raise NotFound("File not found") from None
            raise
        with body:
            return body.read(), content_type

    def presigned_url(self, key, content_type, disposition):
        """A URL any client can GET the object at for :data:`PRESIGN_SECONDS`, answered
        with the given type and ``Content-Disposition``."""
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=PRESIGN_SECONDS,
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type,
                    "ResponseContentDisposition": disposition})

    def open(self, key, range_header=None):
        """The object's ``get_object`` answer (``Body`` streams), for a ``Range`` or not."""
        params = {"Bucket": self.bucket, "Key": key}
        if range_header:
            params["Range"] = range_header
        return self.client.get_object(**params)

    # -- deleting -------------------------------------------------------------------------

    def delete(self, file_id):
        with self.db.transaction() as conn:
            row = conn.execute("DELETE FROM files WHERE file_id = ?"
                               " RETURNING object_key, s3_upload_id", (file_id,)).fetchone()
        if row is not None:
            self._abort(row["object_key"], row["s3_upload_id"])
            self._delete_objects([row["object_key"]])

    def expire(self, now, retention, batch=200, upload_expiry=UPLOAD_EXPIRY_SECONDS):
        kept = now - float(retention) if retention else 0.0
        with self.db.transaction() as conn:
            rows = conn.execute(
                "DELETE FROM files WHERE file_id IN (SELECT file_id FROM files WHERE"
                " (complete = 1 AND created_at < ?) OR (complete = 0 AND created_at < ?)"
                " LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING object_key, s3_upload_id",
                (kept, now - upload_expiry, batch)).fetchall()
        for row in rows:
            self._abort(row["object_key"], row["s3_upload_id"])
        self._delete_objects([row["object_key"] for row in rows])
        return len(rows)

    def sweep(self, now, min_age=UPLOAD_EXPIRY_SECONDS, stop=None):
        """Delete objects no row names (a process stopped between its upload and its row,
        or between deleting a row and its object) last changed ``min_age`` seconds ago."""
        removed = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        conn = self.db.connect()
        for page in pages:
            if stop is not None and stop.is_set():
                break
            for item in page.get("Contents", ()):
                if item["LastModified"].timestamp() > now - min_age:
                    continue
                if conn.execute("SELECT 1 FROM files WHERE object_key = ?",
                                (item["Key"],)).fetchone() is None:
                    removed.append(item["Key"])
        self._delete_objects(removed)
        return len(removed)


def chunks_of(body, size=CHUNK):
    """The chunks of a streaming S3 body, closed at the end."""
    try:
        yield from body.iter_chunks(size)
    finally:
        body.close()

