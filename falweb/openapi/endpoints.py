"""An :class:`~falweb.schemas.endpoint.Endpoint` made from an endpoint's OpenAPI document.

Works on fal's queue documents (POST ``/<id>`` takes the input, GET ``.../requests/{id}``
answers the output) and on a plain app document whose POST route answers the output
directly (an app served locally, ``/openapi.json``).
"""

import threading

from falweb.openapi.documents import METADATA_KEY
from falweb.openapi.documents import DocumentError
from falweb.openapi.documents import endpoint_id_of
from falweb.openapi.documents import input_and_output
from falweb.schemas.endpoint import Endpoint
from falweb.schemas.from_json_schema import Builder

#: Input fields that choose the image format, as fal's model families spell it.
FORMAT_FIELDS = ("output_format", "image_format", "format")


def _title(endpoint_id, metadata):
    return metadata.get("title") or endpoint_id


def _description(document, metadata):
    info = document.get("info") or {}
    description = info.get("description") or ""
    # fal's queue documents all say "The OpenAPI schema for the <id> queue.": say what it is.
    if not description or description.startswith("The OpenAPI schema for the "):
        category = metadata.get("category") or "fal"
        article = "An" if category[:1].lower() in "aeiou" else "A"
        description = f"{article} {category} endpoint, from its OpenAPI document."
    return description


def endpoint_from_document(document, endpoint_id=None, source=""):
    """The :class:`Endpoint` ``document`` describes (schemas generated at run time).

    :raise DocumentError: the document names no endpoint or has no input.
    :raise falweb.schemas.from_json_schema.SchemaError: a broken ``$ref``.
    """
    if not isinstance(document, dict):
        raise DocumentError("a document is a JSON object")
    endpoint_id = (endpoint_id or endpoint_id_of(document) or "").strip("/")
    if not endpoint_id:
        raise DocumentError("the document names no endpoint")
    metadata = (document.get("info") or {}).get(METADATA_KEY) or {}
    input_node, output_node = input_and_output(document)
    inputs = Builder(document)
    input_schema = inputs.schema_class(input_node, _class_name(endpoint_id, "Input"), top=True)
    output_schema = Builder(document, for_output=True).schema_class(
        output_node, _class_name(endpoint_id, "Output"))
    properties = inputs.resolve(input_node).get("properties") or {}
    file_fields = tuple(name for name in input_schema._declared_fields
                        if name.endswith("_url"))
    format_field = next((name for name in FORMAT_FIELDS if name in properties), "format")
    return Endpoint(
        endpoint_id=endpoint_id,
        title=_title(endpoint_id, metadata),
        description=_description(document, metadata),
        input_schema=input_schema,
        output_schema=output_schema,
        file_fields=file_fields,
        format_field=format_field,
        category=metadata.get("category") or "",
        document=document,
        source=source,
    )


def _class_name(endpoint_id, suffix):
    words = [w for w in endpoint_id.replace("/", "-").replace(".", "-").split("-") if w]
    return "".join(w[:1].upper() + w[1:] for w in words) + suffix


class EndpointCache:
    """Endpoints built once per document object: a source hands back the same object until
    its file changes, so an unchanged document is not rebuilt at every lookup."""

    def __init__(self):
        self._built = {}
        self._lock = threading.Lock()

    def get(self, endpoint_id, document, source=""):
        key = endpoint_id
        with self._lock:
            found = self._built.get(key)
        if found is not None and found.document is document:
            return found
        endpoint = endpoint_from_document(document, endpoint_id, source)
        with self._lock:
            self._built[key] = endpoint
        return endpoint


CACHE = EndpointCache()
