"""Where endpoint documents come from: fal's per-endpoint "queue OpenAPI" documents, by id.

A *source* answers ``document(endpoint_id)`` (the parsed document, or ``None``) and
``endpoint_ids()`` (the ids it can list; a remote source may list only what it has cached).
Sources are asked in order of registration, newest first, after the documents shipped with the
package, so a document dropped into ``instance/openapi/`` can stand in for a shipped one only
when the shipped one is absent. This module imports nothing of the web app: the local runtime
resolves endpoints with it too.

Other parts of falweb (or an embedding application) add sources with
:func:`register_source`: a folder of ``*.json`` documents with :func:`add_directory`, an app
served locally (its ``/openapi.json``) with :func:`register_document`, fal's published
documents with :class:`falweb.openapi.remote.FalDocuments`.
"""

import json
import os
import threading
from importlib import resources

#: Where fal's documents name their endpoint.
METADATA_KEY = "x-fal-metadata"


class DocumentError(ValueError):
    """A document that cannot describe an endpoint; the message says why."""


def endpoint_id_of(document):
    """The endpoint id a fal queue document is for: ``info.x-fal-metadata.endpointId``, else
    the path of its POST route (``/fal-ai/flux/dev``), else ``None``."""
    info = document.get("info") if isinstance(document, dict) else None
    metadata = (info or {}).get(METADATA_KEY) or {}
    if isinstance(metadata.get("endpointId"), str):
        return metadata["endpointId"].strip("/")
    for path, operations in (document.get("paths") or {}).items():
        if isinstance(operations, dict) and "post" in operations and "{" not in path:
            return path.strip("/") or None
    return None


def _json_schema(operation_or_response):
    content = (operation_or_response or {}).get("content") or {}
    return (content.get("application/json") or {}).get("schema")


def input_and_output(document):
    """(input schema node, output schema node) of the document's endpoint.

    :raise DocumentError: the document has no POST route with a JSON body.
    """
    paths = document.get("paths") or {}
    posted = output = None
    for path, operations in paths.items():
        if not isinstance(operations, dict):
            continue
        if "post" in operations and "{" not in path and posted is None:
            operation = operations["post"] or {}
            posted = _json_schema(operation.get("requestBody"))
            answered = _json_schema((operation.get("responses") or {}).get("200"))
            if answered and not str(answered.get("$ref", "")).endswith("/QueueStatus"):
                output = output or answered
        if path.endswith("/requests/{request_id}") and "get" in operations:
            output = _json_schema(((operations["get"] or {}).get("responses") or {})
                                  .get("200")) or output
    if posted is None:
        raise DocumentError("the document has no POST route with a JSON request body")
    return posted, output or {"type": "object", "additionalProperties": True}


class StaticDocuments:
    """Documents held in memory, by endpoint id (shipped ones, registered ones)."""

    def __init__(self, documents=None):
        self._documents = dict(documents or {})

    def add(self, document, endpoint_id=None):
        endpoint_id = (endpoint_id or endpoint_id_of(document) or "").strip("/")
        if not endpoint_id:
            raise DocumentError("the document names no endpoint (info.x-fal-metadata.endpointId)")
        self._documents[endpoint_id] = document
        return endpoint_id

    def document(self, endpoint_id):
        return self._documents.get(endpoint_id)

    def endpoint_ids(self):
        return list(self._documents)


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def builtin_documents():
    """The ten documents shipped in ``falweb/openapi/builtin/``, unmodified."""
    found = StaticDocuments()
    folder = resources.files("falweb.openapi") / "builtin"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            found.add(json.loads(entry.read_text(encoding="utf-8")))
    return found


class DirectoryDocuments:
    """Every ``*.json`` document in a folder, re-read when a file changes (mtime and size).

    A file that is not JSON or names no endpoint is skipped (and listed in ``problems``) rather
    than breaking the whole catalog.
    """

    def __init__(self, folder):
        self.folder = os.path.abspath(folder)
        self._seen = {}  # path → ((mtime_ns, size), endpoint_id, document)
        self._lock = threading.Lock()
        self.problems = {}

    def _scan(self):
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".json"))
        except FileNotFoundError:
            names = []
        by_id = {}
        with self._lock:
            for name in names:
                path = os.path.join(self.folder, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                stamp = (stat.st_mtime_ns, stat.st_size)
                seen = self._seen.get(path)
                if seen is None or seen[0] != stamp:
                    try:
                        document = _read_json(path)
                        endpoint_id = endpoint_id_of(document)
                        if not endpoint_id:
                            raise DocumentError("names no endpoint")
                    except (ValueError, OSError) as exc:
                        self.problems[name] = str(exc)
                        self._seen.pop(path, None)
                        continue
                    self.problems.pop(name, None)
                    seen = self._seen[path] = (stamp, endpoint_id, document)
                by_id.setdefault(seen[1], seen[2])
        return by_id

    def document(self, endpoint_id):
        return self._scan().get(endpoint_id)

    def endpoint_ids(self):
        return list(self._scan())


class Registry:
    """The ordered sources the catalog asks; the newest registration is asked first."""

    def __init__(self):
        self._sources = []
        self._lock = threading.Lock()
        self._folders = {}

    def register(self, source):
        """Add ``source`` (see the module docstring); returns a function that removes it."""
        with self._lock:
            self._sources.insert(0, source)

        def unregister():
            with self._lock:
                if source in self._sources:
                    self._sources.remove(source)

        return unregister

    def add_directory(self, folder):
        """Serve the documents in ``folder`` (once per folder, however often it is added)."""
        folder = os.path.abspath(folder)
        with self._lock:
            source = self._folders.get(folder)
            if source is not None:
                return source
            source = self._folders[folder] = DirectoryDocuments(folder)
            self._sources.insert(0, source)
        return source

    def sources(self):
        with self._lock:
            return [*self._sources, BUILTIN]

    def document(self, endpoint_id):
        """The first source's document for ``endpoint_id`` with its source, or (None, None)."""
        for source in self.sources():
            document = source.document(endpoint_id)
            if document is not None:
                return document, source
        return None, None

    def endpoint_ids(self):
        ids = {}
        for source in reversed(self.sources()):
            for endpoint_id in source.endpoint_ids():
                ids[endpoint_id] = True
        return sorted(ids)


BUILTIN = builtin_documents()
REGISTRY = Registry()


def register_source(source):
    """Add a document source to the catalog; returns a function that removes it again.

    ``source`` has ``document(endpoint_id) -> dict | None`` and ``endpoint_ids() -> list``.
    """
    return REGISTRY.register(source)


def register_document(document, endpoint_id=None):
    """Make one document (a locally served app's ``/openapi.json``) a catalog entry.

    ``endpoint_id`` defaults to the one the document names. Returns a function that removes it.
    :raise DocumentError: no endpoint id given and the document names none.
    """
    source = StaticDocuments()
    source.add(document, endpoint_id)
    return REGISTRY.register(source)


def add_directory(folder):
    """Serve every ``*.json`` document in ``folder`` (``instance/openapi/``)."""
    return REGISTRY.add_directory(folder)


def get_document(endpoint_id):
    """The document for ``endpoint_id`` from the registered sources, or ``None``."""
    return REGISTRY.document(endpoint_id)[0]
