"""fal's published endpoint documents, fetched once and cached in the instance folder.

fal serves a "queue OpenAPI" document per endpoint, without a key, at
``https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>``. A fetched document is
written to ``<instance>/openapi-cache/`` with the time it was fetched; after ``ttl`` seconds it
is fetched again. When fal cannot be reached the cached copy is used and :meth:`note` says so
(the pages show it), and fal is not asked again for ``retry_after`` seconds, so a machine
that went offline does not wait on a timeout at every page.
"""

import json
import os
import re
import threading
import time

import requests

from falweb.openapi.documents import endpoint_id_of

FAL_OPENAPI_URL = "https://fal.ai/api/openapi/queue/openapi.json"
#: What an endpoint id may look like before it is sent anywhere: fal's owner/app[/path].
ENDPOINT_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,99}(/[\w.-]{1,100}){1,6}")


def valid_endpoint_id(endpoint_id):
    return isinstance(endpoint_id, str) and ENDPOINT_ID.fullmatch(endpoint_id) is not None


class FalDocuments:
    """A document source (see :mod:`falweb.openapi.documents`) backed by fal.ai.

    :param folder: the cache folder (``<instance>/openapi-cache``).
    :param ttl: seconds a cached document is used before it is fetched again.
    :param url: the document URL without its query (tests point it at a fake fal).
    :param timeout: (connect, read) seconds for one fetch.
    :param retry_after: seconds fal is not asked again after a failed fetch, per endpoint.
    """

    def __init__(self, folder, *, ttl=24 * 3600, url=FAL_OPENAPI_URL, timeout=(3, 10),
                 retry_after=300, session=None):
        self.folder = folder
        self.ttl = float(ttl)
        self.url = url
        self.timeout = timeout
        self.retry_after = float(retry_after)
        self.session = session or requests.Session()
        self._failed = {}  # endpoint_id → monotonic time of the last failed fetch
        self._notes = {}
        self._read = {}  # cache file path → ((mtime_ns, size), (fetched_at, document))
        self._lock = threading.Lock()

    # -- the cache --------------------------------------------------------------------------

    def _path(self, endpoint_id):
        return os.path.join(self.folder, endpoint_id.replace("/", "__") + ".json")

    def _read_cache(self, endpoint_id):
        """(fetched_at, document) from the cache file, or None. The same document object
        comes back while the file is unchanged, so the endpoint built from it (and its
        schema classes) is built once, not at every lookup."""
        path = self._path(endpoint_id)
        try:
            stat = os.stat(path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            with self._lock:
                held = self._read.get(path)
            if held is not None and held[0] == stamp:
                return held[1]
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
            found = float(entry["fetched_at"]), entry["document"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        with self._lock:
            self._read[path] = (stamp, found)
        return found

    def _write_cache(self, endpoint_id, document):
        os.makedirs(self.folder, exist_ok=True)
        path = self._path(endpoint_id)
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"fetched_at": time.time(), "document": document}, f)
        # Atomic: a reader in another worker never sees half a document.
        os.replace(temporary, path)

    # -- the source interface ---------------------------------------------------------------

    def document(self, endpoint_id):
        """The cached document while fresh, else a fetched one; the stale copy (with a
        :meth:`note`) when fal cannot be reached; ``None`` when fal has no such endpoint."""
        if not valid_endpoint_id(endpoint_id):
            return None
        cached = self._read_cache(endpoint_id)
        if cached is not None and time.time() - cached[0] < self.ttl:
            return cached[1]
        with self._lock:
            failed = self._failed.get(endpoint_id)
        if failed is None or time.monotonic() - failed > self.retry_after:
            try:
                document = self._fetch(endpoint_id)
            except _Unreachable as exc:
                with self._lock:
                    self._failed[endpoint_id] = time.monotonic()
                    self._notes[endpoint_id] = str(exc)
            else:
                with self._lock:
                    self._failed.pop(endpoint_id, None)
                    self._notes.pop(endpoint_id, None)
                if document is not None:
                    self._write_cache(endpoint_id, document)
                return document
        return cached[1] if cached is not None else None

    def endpoint_ids(self):
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(".json")].replace("__", "/") for n in names if n.endswith(".json"))

    def note(self, endpoint_id):
        """Why the document shown may be out of date (fal unreachable), or ``None``."""
        with self._lock:
            reason = self._notes.get(endpoint_id)
        if reason is None:
            return None
        cached = self._read_cache(endpoint_id)
        if cached is None:
            return None
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(cached[0]))
        return f"fal.ai could not be reached ({reason}); using the copy of its document " \
               f"cached on {when}."

    def _fetch(self, endpoint_id):
        """The document fal publishes, ``None`` when fal says it has no such endpoint."""
        try:
            answer = self.session.get(self.url, params={"endpoint_id": endpoint_id},
                                      timeout=self.timeout)
        except requests.RequestException as exc:
            raise _Unreachable(type(exc).__name__) from None
        if answer.status_code in (400, 404):
            return None
        if answer.status_code != 200:
            raise _Unreachable(f"HTTP {answer.status_code}")
        try:
            document = answer.json()
        except ValueError:
            raise _Unreachable("the answer was not JSON") from None
        if not isinstance(document, dict) or endpoint_id_of(document) != endpoint_id:
            # fal answers some unknown ids with an error object rather than a 404.
            return None
        return document


class _Unreachable(Exception):
    pass


EXTENSION = "fal_openapi"


def init_app(app):
    """With the fal backend, make fal's published documents a source for this app's pages,
    CLI and client (``app.extensions["fal_openapi"]``); with the local backend, nothing."""
    app.extensions[EXTENSION] = None
    if app.config.get("FALWEB_BACKEND") != "fal":
        return
    app.extensions[EXTENSION] = FalDocuments(
        os.path.join(app.instance_path, "openapi-cache"),
        ttl=app.config.get("FALWEB_OPENAPI_TTL", 24 * 3600),
        url=app.config.get("FALWEB_OPENAPI_URL") or FAL_OPENAPI_URL,
    )


def current():
    """The current app's :class:`FalDocuments`, or ``None`` (no app, or not the fal backend)."""
    try:
        from flask import current_app
        from flask import has_app_context
    except ImportError:  # pragma: no cover - flask is a dependency
        return None
    if not has_app_context():
        return None
    return current_app.extensions.get(EXTENSION)
