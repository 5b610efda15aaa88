"""Any fal endpoint from its OpenAPI document: where documents come from, and what is made
of them (marshmallow schemas, :class:`~falweb.schemas.catalog.Endpoint` entries).

Register a document source with :func:`register_source` (an object with
``document(endpoint_id)`` and ``endpoint_ids()``), one document with
:func:`register_document`, a folder with :func:`add_directory`. fal's published documents
are a source of the app when its backend is fal (:mod:`falweb.openapi.remote`).
"""

from falweb.openapi import remote
from falweb.openapi.documents import BUILTIN
from falweb.openapi.documents import REGISTRY
from falweb.openapi.documents import DocumentError
from falweb.openapi.documents import add_directory
from falweb.openapi.documents import endpoint_id_of
from falweb.openapi.documents import get_document
from falweb.openapi.documents import register_document
from falweb.openapi.documents import register_source


def _source_name(source):
    if source is BUILTIN:
        return "builtin"
    folder = getattr(source, "folder", None)
    if isinstance(source, remote.FalDocuments):
        return "fal"
    return folder or type(source).__name__


def find_document(endpoint_id):
    """(document, where it came from) for ``endpoint_id``, or (None, None): the registered
    sources first, then (fal backend only) fal's published document."""
    document, source = REGISTRY.document(endpoint_id)
    if document is None:
        source = remote.current()
        document = source.document(endpoint_id) if source is not None else None
    if document is None:
        return None, None
    return document, _source_name(source)


def known_endpoint_ids():
    """Every endpoint id the documents list (fal's: only those cached), sorted."""
    ids = set(REGISTRY.endpoint_ids())
    source = remote.current()
    if source is not None:
        ids.update(source.endpoint_ids())
    return sorted(ids)


def document_note(endpoint_id):
    """A note to show beside an endpoint whose document may be out of date, or ``None``."""
    source = remote.current()
    return source.note(endpoint_id) if source is not None else None


__all__ = [
    "DocumentError",
    "add_directory",
    "document_note",
    "endpoint_id_of",
    "find_document",
    "get_document",
    "known_endpoint_ids",
    "register_document",
    "register_source",
]
