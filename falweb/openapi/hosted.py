"""The apps the local runtime hosts (:mod:`falweb.local.apps`), as catalog entries.

A hosted app serves one OpenAPI document for all its routes (FastAPI's, or the native API's).
fal names each POST route an endpoint of its own: ``<owner>/<app>`` for ``/`` and
``<owner>/<app>/<path>`` for the others. This source splits an app's document that way, so
each endpoint gets the form, schema and outputs of its own route.

Documents come from a function returning ``{app_id: document}`` (the embedded runtime's
``apps.openapi_documents``, or the runtime's ``GET /apps`` over HTTP), asked at most once per
``ttl`` seconds (every page that looks for a document would otherwise call every app), and
after a failure not before ``retry_after``.
"""

import copy
import threading
import time

from falweb.openapi.documents import METADATA_KEY


def _routes(document):
    """``{path: POST operation}`` of the document's plain POST routes (no path parameters)."""
    return {path: operations for path, operations in (document.get("paths") or {}).items()
            if isinstance(operations, dict) and "post" in operations and "{" not in path}


def endpoint_document(document, app_id, path):
    """The part of an app's ``document`` for its route ``path``, named ``app_id`` + path."""
    endpoint_id = app_id if path in ("", "/") else f"{app_id}/{path.strip('/')}"
    part = copy.deepcopy({key: value for key, value in document.items() if key != "paths"})
    part["paths"] = {path: copy.deepcopy(document["paths"][path])}
    info = part.setdefault("info", {})
    info[METADATA_KEY] = {**(info.get(METADATA_KEY) or {}), "endpointId": endpoint_id,
                          "category": "hosted app"}
    return endpoint_id, part


class HostedAppDocuments:
    """A document source (see :mod:`falweb.openapi.documents`) over a runtime's hosted apps."""

    def __init__(self, fetch, ttl=5.0, retry_after=30.0):
        self._fetch = fetch
        self._ttl = ttl
        # A runtime that did not answer is asked again only after this: a page looking
        # for a document must not wait on it every few seconds.
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._by_endpoint = {}
        self._until = 0.0

    def _documents(self):
        with self._lock:
            if time.monotonic() >= self._until:
                try:
                    apps = self._fetch() or {}
                except Exception:  # noqa: BLE001 - keep what it said last, ask again later
                    self._until = time.monotonic() + self._retry_after
                    return self._by_endpoint
                by_endpoint = {}
                for app_id, document in apps.items():
                    for path in _routes(document):
                        endpoint_id, part = endpoint_document(document, app_id, path)
                        by_endpoint[endpoint_id] = part
                self._by_endpoint = by_endpoint
                self._until = time.monotonic() + self._ttl
            return self._by_endpoint

    def document(self, endpoint_id):
        return self._documents().get(endpoint_id)

    def endpoint_ids(self):
        return list(self._documents())
