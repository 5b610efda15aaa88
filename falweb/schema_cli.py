"""``falweb schema ENDPOINT_ID``: the input fields of any endpoint, from its OpenAPI document.

One line a field: name, type, required or its default, bounds, choices, then the document's
description. With a fal key set, an endpoint falweb does not ship is looked up on fal.ai
(cached in the instance folder, like the app does).
"""

import argparse
import json
import os
import sys

from marshmallow import fields as ma_fields

from falweb.schemas import describe_fields
from falweb.schemas import get_endpoint

DESCRIPTION = """\
Print the input fields of a model endpoint: name, type, whether it is required or its
default, its bounds and choices, and what it does. The fields come from the endpoint's
OpenAPI document: shipped with falweb, dropped into instance/openapi/, or (with a fal key)
fetched from fal.ai."""


def add_parser(sub):
    parser = sub.add_parser("schema", help="print the input fields of an endpoint",
                            description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("endpoint_id", help="the model endpoint, e.g. fal-ai/flux/dev")
    parser.add_argument("--json", action="store_true",
                        help="print the endpoint's input JSON Schema as fal documents it")
    parser.set_defaults(func=main)


def _lookup(endpoint_id, environ):
    """The endpoint, asking fal.ai for its document when a key is set and nothing local has it."""
    from falweb.config import backend_of

    endpoint = get_endpoint(endpoint_id)
    if endpoint is not None or backend_of(environ) != "fal":
        return endpoint
    from falweb.openapi import register_source
    from falweb.openapi.remote import FAL_OPENAPI_URL
    from falweb.openapi.remote import FalDocuments

    instance = environ.get("FALWEB_INSTANCE_PATH") or os.path.join(os.getcwd(), "instance")
    remove = register_source(FalDocuments(
        os.path.join(instance, "openapi-cache"),
        url=environ.get("FALWEB_OPENAPI_URL") or FAL_OPENAPI_URL))
    try:
        return get_endpoint(endpoint_id)
    finally:
        remove()


def _type(field, info):
    if info.kind in ("list", "group"):
        return "list of objects" if info.kind == "list" else "object"
    if info.kind == "image_size":
        return "image_size (preset or {width, height})"
    if info.kind == "select":
        return "enum"
    if info.kind in ("file", "files"):
        return "file URL" + ("s" if info.kind == "files" else "")
    if isinstance(field, ma_fields.List):
        return "list"
    return {"textarea": "text"}.get(info.kind, info.kind)


def describe(endpoint):
    """The lines ``falweb schema`` prints for ``endpoint``."""
    schema_fields = endpoint.input_schema().fields
    lines = [f"{endpoint.endpoint_id}  ({endpoint.category or 'endpoint'})"]
    for info in describe_fields(endpoint):
        field = schema_fields[info.name]
        facts = [_type(field, info), "required" if info.required else None]
        if not info.required and info.default not in (None, "", []):
            facts.append(f"default {json.dumps(info.default)}")
        bounded = info.min is not None or info.max is not None
        if bounded and info.kind in ("integer", "number"):
            low = "" if info.min is None else info.min
            high = "" if info.max is None else info.max
            facts.append(f"{low}..{high}")
        if info.choices and info.kind == "select":
            facts.append("one of " + ", ".join(str(c) for c in info.choices))
        lines.append(f"  {info.name}: {'; '.join(f for f in facts if f)}")
        if info.description:
            lines.append(f"      {info.description}")
        for sub in info.subfields if info.kind in ("list", "group") else ():
            lines.append(f"      .{sub.name}: {sub.kind}{' (required)' if sub.required else ''}")
    return lines


def main(args, stdout=None, stderr=None, environ=None):
    """Run ``falweb schema``; returns the exit status (1: no such endpoint)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    endpoint = _lookup(args.endpoint_id.strip("/"), os.environ if environ is None else environ)
    if endpoint is None:
        print(f"error: no OpenAPI document for {args.endpoint_id!r} (shipped, in "
              "instance/openapi/, or on fal.ai with a key set)", file=stderr)
        return 1
    if args.json:
        from falweb.openapi import get_document

        document = endpoint.document or get_document(endpoint.endpoint_id)
        print(json.dumps(document, indent=2), file=stdout)
        return 0
    for line in describe(endpoint):
        print(line, file=stdout)
    return 0
