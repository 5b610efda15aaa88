"""The storage service's state and rules: initiate, upload (single or multipart), read, expire.

Files live under ``<instance>/files/<file_id>/``; their metadata in SQLite. An upload id is
an unguessable random token, which is what lets the upload URL take a PUT without
credentials (fal's signed upload URLs play that part). The folder is made by the first PUT,
not by initiate: an upload URL that is never used costs one row, which expires.

Two limits, both checked while streaming, so a liar's Content-Length cannot fill the disk:
one file above ``max_bytes`` is :class:`TooLarge` (413), and a file that would take the
bytes of every stored file and part past ``max_storage`` is :class:`StorageFull` (507). The
total is kept by triggers (``usage``) and checked again in the transaction that records
the file, so uploads running side by side cannot pass the cap together. Bodies stream to a
temporary name and become the file only once recorded: nothing of a refused upload stays.

Retention (:meth:`Storage.expire`): files older than the retention are deleted, uploads
never completed after ``UPLOAD_EXPIRY_SECONDS``; rows first (one short transaction per
batch), then their folders. An upload that loses its row meanwhile answers 404 and removes
what it wrote.
"""

import contextlib
import hashlib
import mimetypes
import os
import re
import secrets
import shutil
import time

CHUNK = 1024 * 1024
PART_LIMIT = 10_000
#: Seconds an upload URL stays usable; an upload not completed by then is deleted.
UPLOAD_EXPIRY_SECONDS = 3600


class StorageError(Exception):
    status = 400


class NotFound(StorageError):
    status = 404


class TooLarge(StorageError):
    status = 413


class StorageFull(StorageError):
    """Storing the file would exceed the runtime's storage cap."""

    status = 507


def safe_file_name(name, content_type):
    """A file name that is safe in a URL path segment and on disk."""
    name = os.path.basename((name or "").replace("\\", "/"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:120]
    if not name:
        ext = mimetypes.guess_extension(content_type or "") or ".bin"
        name = f"{int(time.time() * 1000)}{ext}"
    return name


class Storage:
    """Stored files: ``max_bytes`` per file, ``max_storage`` in all (0: no cap)."""

    def __init__(self, db, root, max_bytes, max_storage=0):
        self.db = db
        self.root = root
        self.max_bytes = int(max_bytes)
        self.max_storage = int(max_storage or 0)
        os.makedirs(root, exist_ok=True)

    def _dir(self, file_id):
        return os.path.join(self.root, file_id)

    def initiate(self, content_type, file_name, multipart=False):
        """A new empty file (a row only); returns (file_id, upload_id, file_name)."""
        content_type = content_type or "application/octet-stream"
        file_name = safe_file_name(file_name, content_type)
        file_id = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        upload_id = secrets.token_urlsafe(24)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO files (file_id, file_name, content_type, upload_id, multipart,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (file_id, file_name, content_type, upload_id, int(multipart), time.time()),
            )
        return file_id, upload_id, file_name

    def save(self, data, content_type, file_name):
        """Store ``data`` at once (engine outputs); returns (file_id, file_name).
        :class:`StorageFull` (and no file) when it does not fit.

        Written under a temporary name, then recorded complete and renamed in one
        transaction: an engine's output costs one write transaction, not an upload's
        initiate and commit (a job's costliest step after the image itself).
        """
        content_type = content_type or "application/octet-stream"
        file_name = safe_file_name(file_name, content_type)
        size = len(data)
        if size > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        file_id = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        folder = self._dir(file_id)
        os.makedirs(folder)
        tmp = os.path.join(folder, f"data.{secrets.token_hex(6)}.part")
        try:
            with open(tmp, "wb") as out:
                out.write(data)
            with self.db.transaction() as conn:
                if self.max_storage:
                    used = self.used(conn)
                    if used + size > self.max_storage:
                        raise self._full(used)
                conn.execute(
                    "INSERT INTO files (file_id, file_name, content_type, size, upload_id,"
                    " multipart, complete, created_at) VALUES (?, ?, ?, ?, ?, 0, 1, ?)",
                    (file_id, file_name, content_type, size, secrets.token_urlsafe(24),
                     time.time()),
                )
                os.replace(tmp, os.path.join(folder, "data"))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return file_id, file_name

    def _save_as_upload(self, data, content_type, file_name):
        """:meth:`save` through the upload path (initiate, then write), for stores whose
        bytes live elsewhere (:class:`~falweb.local.s3_storage.S3Storage`)."""
        file_id, upload_id, file_name = self.initiate(content_type, file_name)
        try:
            self.write(upload_id, _chunks(data), content_type=None, length=len(data))
        except StorageError:
            self.delete(file_id)
            raise
        return file_id, file_name

    def delete(self, file_id):
        """Remove a file, its row first."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM files WHERE file_id = ?", (file_id,))
        shutil.rmtree(self._dir(file_id), ignore_errors=True)

    def used(self, conn=None):
        """Bytes of every stored file and uploaded part."""
        # In a transaction about to store bytes, the row is locked (PostgreSQL) so that two
        # uploads cannot both pass the cap.
        lock = self.db.for_update if conn is not None else ""
        row = (conn or self.db.connect()).execute(
            "SELECT bytes FROM usage WHERE id = 1" + lock).fetchone()
        return row["bytes"] if row else 0

    def _full(self, used=None):
        used = self.used() if used is None else used
        return StorageFull(
            f"Insufficient storage: this file would take the stored files past the "
            f"{self.max_storage} bytes allowed (FALWEB_LOCAL_MAX_STORAGE_BYTES); "
            f"{used} bytes are in use")

    def _room(self, freed=0):
        """Bytes a new body may take under the cap, counting ``freed`` bytes it replaces;
        None without a cap."""
        if not self.max_storage:
            return None
        used = self.used()
        room = self.max_storage - used + freed
        if room < 0:
            raise self._full(used)
        return room

    def _check_length(self, length, room):
        if length is None:
            return
        if length > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        if room is not None and length > room:
            raise self._full()

    def _record(self, conn, file_id, replaced, size):
        """Inside a transaction: the file's current size, once it is known that replacing
        ``replaced`` of its bytes by ``size`` fits; NotFound when the row is gone (expired
        while uploading), StorageFull over the cap."""
        row = conn.execute("SELECT size FROM files WHERE file_id = ?" + self.db.for_update,
                           (file_id,)).fetchone()
        if row is None:
            raise NotFound("Unknown upload URL (it expired)")
        if self.max_storage:
            used = self.used(conn)
            if used - replaced + size > self.max_storage:
                raise self._full(used)
        return row["size"] or 0

    def _by_upload(self, upload_id):
        row = self.db.connect().execute(
            "SELECT * FROM files WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        # Upload URLs last an hour, as fal's signed ones do: a leaked one cannot replace a
        # file later, and an unfinished upload is not resumed after the cleanup took it.
        if row is None or row["created_at"] < time.time() - UPLOAD_EXPIRY_SECONDS:
            raise NotFound("Unknown upload URL")
        return row

    def _receive(self, folder, name, chunks, room):
        """Stream ``chunks`` to a new temporary file in ``folder``: (its path, size, md5)."""
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{name}.{secrets.token_hex(6)}.part")
        size = 0
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with open(tmp, "wb") as out:
                for chunk in self._limited(chunks, room):
                    size += len(chunk)
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            _remove(tmp)
            raise
        return tmp, size, digest.hexdigest()

    def _limited(self, chunks, room):
        """``chunks`` as they come, refused (:class:`TooLarge`, or full storage) once they
        add up to more than one file may hold or than ``room`` (None: no cap) left."""
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
            if room is not None and size > room:
                raise self._full()
            yield chunk

    def _commit(self, file_id, tmp, final, update):
        """Move ``tmp`` to ``final`` and run ``update(conn, new_row_size)`` in one
        transaction, after :meth:`_record`'s checks; nothing stays when they refuse."""
        size = os.path.getsize(tmp)
        try:
            with self.db.transaction() as conn:
                replaced = os.path.getsize(final) if os.path.exists(final) else 0
                current = self._record(conn, file_id, replaced, size)
                os.replace(tmp, final)
                # (max: a row from before sizes counted parts may say 0 for parts it has)
                update(conn, max(0, current - replaced) + size)
        except NotFound:
            shutil.rmtree(self._dir(file_id), ignore_errors=True)
            raise
        finally:
            _remove(tmp)

    def write(self, upload_id, chunks, content_type=None, length=None):
        """Single upload: the whole body at once. Returns the file row's id."""
        row = self._by_upload(upload_id)
        file_id = row["file_id"]
        room = self._room(freed=row["size"] or 0)
        self._check_length(length, room)
        folder = self._dir(file_id)
        kind = _pick_content_type(row["content_type"], content_type)

        def update(conn, size):
            conn.execute("UPDATE files SET size = ?, complete = 1, content_type = ?"
                         " WHERE file_id = ?", (size, kind, file_id))

        try:
            tmp, _, _ = self._receive(folder, "data", chunks, room)
            self._commit(file_id, tmp, os.path.join(folder, "data"), update)
        except BaseException:
            _prune(folder)
            raise
        return file_id

    def write_part(self, upload_id, part_number, chunks, length=None):
        """One multipart part; returns its etag."""
        row = self._by_upload(upload_id)
        if not 1 <= part_number <= PART_LIMIT:
            raise StorageError(f"partNumber must be between 1 and {PART_LIMIT}")
        file_id = row["file_id"]
        parts = os.path.join(self._dir(file_id), "parts")
        final = os.path.join(parts, str(part_number))
        room = self._room(freed=os.path.getsize(final) if os.path.exists(final) else 0)
        self._check_length(length, room)

        def update(conn, size):
            conn.execute("UPDATE files SET size = ? WHERE file_id = ?", (size, file_id))

        try:
            tmp, _, etag = self._receive(parts, str(part_number), chunks, room)
            self._commit(file_id, tmp, final, update)
        except BaseException:
            _prune(parts, self._dir(file_id))
            raise
        return etag

    def complete_multipart(self, upload_id, parts):
        """Join the listed parts in order; each etag must match. Returns the file id."""
        row = self._by_upload(upload_id)
        file_id = row["file_id"]
        folder = self._dir(file_id)
        numbers = listed_parts(parts)
        total = 0
        for number, _ in numbers:
            path = os.path.join(folder, "parts", str(number))
            if not os.path.exists(path):
                raise StorageError(f"Part {number} was not uploaded")
            total += os.path.getsize(path)
        if total > self.max_bytes:
            raise TooLarge(f"File larger than the {self.max_bytes} bytes allowed")
        tmp = os.path.join(folder, f"data.{secrets.token_hex(6)}.part")
        try:
            with open(tmp, "wb") as out:
                for number, etag in sorted(numbers):
                    path = os.path.join(folder, "parts", str(number))
                    digest = hashlib.md5(usedforsecurity=False)
                    with open(path, "rb") as src:
                        while chunk := src.read(CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                    if etag and etag.strip('"') != digest.hexdigest():
                        raise StorageError(f"Part {number}: etag does not match")
        except BaseException:
            _remove(tmp)
            raise
        final = os.path.join(folder, "data")
        parts_dir = os.path.join(folder, "parts")
        try:
            with self.db.transaction() as conn:
                # The joined file replaces the parts (and any earlier file): the row's bytes.
                current = conn.execute("SELECT size FROM files WHERE file_id = ?"
                                       + self.db.for_update, (file_id,)).fetchone()
                if current is None:
                    raise NotFound("Unknown upload URL (it expired)")
                if self.max_storage:
                    used = self.used(conn)
                    if used - (current["size"] or 0) + total > self.max_storage:
                        raise self._full(used)
                os.replace(tmp, final)
                conn.execute("UPDATE files SET size = ?, complete = 1 WHERE file_id = ?",
                             (total, file_id))
        except NotFound:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            _remove(tmp)
        shutil.rmtree(parts_dir, ignore_errors=True)
        return file_id

    def get(self, file_id):
        """(path, content_type, file_name, size) of a complete file; NotFound otherwise."""
        row = self.db.connect().execute(
            "SELECT * FROM files WHERE file_id = ? AND complete = 1", (file_id,)
        ).fetchone()
        if row is None:
            raise NotFound("File not found")
        path = os.path.join(self._dir(file_id), "data")
        return path, row["content_type"], row["file_name"], row["size"]

    def read(self, file_id):
        """(bytes, content_type) of a complete file; NotFound otherwise."""
        path, content_type, _, _ = self.get(file_id)
        with open(path, "rb") as f:
            return f.read(), content_type

    def url_name(self, file_id):
        row = self.db.connect().execute(
            "SELECT file_name FROM files WHERE file_id = ?", (file_id,)
        ).fetchone()
        if row is None:
            raise NotFound("File not found")
        return row["file_name"]

    # -- retention ------------------------------------------------------------------------

    def expire(self, now, retention, batch=200, upload_expiry=UPLOAD_EXPIRY_SECONDS):
        """Delete up to ``batch`` files created more than ``retention`` seconds before
        ``now`` (0: kept for ever) and uploads not completed ``upload_expiry`` seconds after
        they were initiated. One short transaction, then the folders; returns how many."""
        kept = now - float(retention) if retention else 0.0
        with self.db.transaction() as conn:
            ids = [row["file_id"] for row in conn.execute(
                "SELECT file_id FROM files WHERE (complete = 1 AND created_at < ?)"
                " OR (complete = 0 AND created_at < ?) LIMIT ?",
                (kept, now - upload_expiry, batch))]
            if ids:
                conn.execute(f"DELETE FROM files WHERE file_id IN ({', '.join('?' * len(ids))})",
                             ids)
        for file_id in ids:
            shutil.rmtree(self._dir(file_id), ignore_errors=True)
        return len(ids)

    def sweep(self, now, min_age=UPLOAD_EXPIRY_SECONDS, stop=None):
        """Remove folders that have no row (a process stopped between deleting a row and
        its folder) and were last changed more than ``min_age`` seconds ago."""
        removed = 0
        conn = self.db.connect()
        with os.scandir(self.root) as entries:
            for entry in entries:
                if stop is not None and stop.is_set():
                    break
                try:
                    if not entry.is_dir(follow_symlinks=False) or \
                            entry.stat(follow_symlinks=False).st_mtime > now - min_age:
                        continue
                except OSError:
                    continue
                if conn.execute("SELECT 1 FROM files WHERE file_id = ?",
                                (entry.name,)).fetchone() is None:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        return removed


def listed_parts(parts):
    """(number, etag) of each part a multipart completion lists, in its order; StorageError
    naming what is wrong with the list."""
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
    return numbers


def _prune(*folders):
    # Folders a refused upload made, if it left them empty.
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _pick_content_type(initiated, sent):
    # The initiate call names the type; a PUT may refine a generic one.
    if initiated == "application/octet-stream" and sent:
        return sent
    return initiated


def _chunks(data):
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]
