"""Reshape an HTML form post into the JSON an endpoint's schema validates.

Only the form path uses this (``FalInput(form=True)``); API callers' JSON is validated as
sent. Form naming, as the pages post it:

- scalars: ``<field>=<text>``; numbers as decimal text, booleans as checkboxes (checked:
  ``on``/``true``/``1``/``yes``; unchecked: absent, ``off``/``false``/``0``/``no``). A boolean
  field that is absent from the post is ``false``: browsers do not send unchecked boxes.
- ``image_size``: a preset name, or ``custom`` with ``image_size_width`` and
  ``image_size_height``.
- list rows (``loras``, ``embeddings``): ``<field>-<index>-<subfield>``, for example
  ``loras-0-path``, ``loras-0-scale``, ``embeddings-0-path``, ``embeddings-0-tokens``.
  Indexes need not be contiguous (rows are ordered by index); a row whose subfields are
  all blank is an unused template row and is dropped, while a row with some values and a
  blank required one (a scale without a path) is kept for the schema to flag. Embedding
  ``tokens`` are comma-separated. A list may also arrive whole, as a list of dicts or as JSON text.
- a single nested object (``advanced_camera_control``) posts like a list with one row,
  ``<field>-0-<subfield>``, and folds to an object; a row left blank leaves it out.
- fields a form cannot model as boxes (free objects, values of several types inside rows)
  are JSON text, parsed here.
- a blank value means "use the default", except for text fields marked ``allow_blank``
  (``negative_prompt``: clearing it is a choice).

Values that cannot be converted are passed on unchanged, so the schema reports them
("Not a valid integer.") beside the right field.
"""

import json
import re
from collections.abc import Mapping

from marshmallow import fields

from falweb.schemas.fields import ImageSize

CUSTOM_SIZE = "custom"
TRUE_STRINGS = frozenset({"on", "true", "1", "yes"})
FALSE_STRINGS = frozenset({"off", "false", "0", "no"})

# Long digit strings would cost int() real time and are never valid numbers here.
_INTEGER = re.compile(r"[+-]?\d{1,40}")
_ROW_KEY = re.compile(r"(?P<field>[A-Za-z_]\w*)-(?P<index>\d{1,6})-(?P<sub>[A-Za-z_]\w*)")


def fold_form(schema, data):
    """Return ``data`` (a form post) reshaped for ``schema``; non-mappings are returned as is."""
    if not isinstance(data, Mapping):
        return data
    data = _flatten(data)
    data = _fold_rows(schema, data)
    data = _fold_custom_size(schema, data)
    return _coerce(schema, data, checkboxes=True)


def _flatten(data):
    # A Werkzeug MultiDict: the last value wins, so "hidden false + checkbox on" reads as on.
    if hasattr(data, "getlist"):
        return {key: data.getlist(key)[-1] for key in data.keys() if data.getlist(key)}
    return dict(data)


def list_row_schema(field):
    """The nested schema of a ``List(Nested(...))`` field, else ``None``."""
    if isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
        return field.inner.schema
    return None


def group_schema(field):
    """The schema of a single nested object (``Nested(...)``), else ``None``."""
    if isinstance(field, fields.Nested) and not field.many:
        return field.schema
    return None


def row_schema(field):
    """The schema of a field posted as rows: a list of objects, or one object (one row)."""
    return list_row_schema(field) or group_schema(field)


def _fold_rows(schema, data):
    rows = {}
    rest = {}
    for key, value in data.items():
        match = _ROW_KEY.fullmatch(key) if isinstance(key, str) else None
        field = schema.fields.get(match["field"]) if match else None
        if field is None or row_schema(field) is None:
            rest[key] = value
            continue
        row = rows.setdefault(match["field"], {}).setdefault(int(match["index"]), {})
        row[match["sub"]] = value
    for name, indexed in rows.items():
        rows_schema = row_schema(schema.fields[name])
        folded = []
        for _, row in sorted(indexed.items()):
            # Subfields the row type does not have are form noise, like other unknown keys.
            row = {k: v for k, v in row.items() if k in rows_schema.fields}
            if all(_blank(value) for value in row.values()):
                continue
            folded.append(row)
        if group_schema(schema.fields[name]) is None:
            rest[name] = folded
        elif folded:
            rest[name] = folded[0]
    return rest


def _fold_custom_size(schema, data):
    names = [n for n, f in schema.fields.items() if isinstance(f, ImageSize)]
    for name in names:
        width = data.pop(f"{name}_width", None)
        height = data.pop(f"{name}_height", None)
        if data.get(name) == CUSTOM_SIZE:
            size = {}
            if not _blank(width):
                size["width"] = width
            if not _blank(height):
                size["height"] = height
            data[name] = size
    return data


def _blank(value):
    return value is None or (isinstance(value, str) and not value.strip())


def _coerce(schema, data, *, checkboxes=False):
    """Convert form strings to the types ``schema``'s fields expect; drop blanks."""
    out = dict(data)
    for name, field in schema.fields.items():
        key = field.data_key or name
        if key not in out:
            if checkboxes and isinstance(field, fields.Boolean):
                out[key] = False
            continue
        value = out[key]
        if isinstance(value, str) and not value.strip():
            if field.metadata.get("allow_blank"):
                out[key] = ""
            elif checkboxes and isinstance(field, fields.Boolean):
                out[key] = False
            else:
                del out[key]
            continue
        out[key] = _coerce_value(field, value)
    return out


def _coerce_value(field, value):
    if isinstance(field, fields.Boolean):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in TRUE_STRINGS:
                return True
            if lowered in FALSE_STRINGS:
                return False
        return value
    if isinstance(field, fields.Integer):
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value.strip())
        return value
    if isinstance(field, fields.Float):
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                return value
        return value
    if isinstance(field, ImageSize):
        if isinstance(value, Mapping):
            return {
                k: _coerce_value(fields.Integer(), v) if isinstance(v, str) else v
                for k, v in value.items()
            }
        return value
    rows_schema = list_row_schema(field)
    if rows_schema is not None:
        if isinstance(value, str):
            value = _json_list(value)
        if isinstance(value, list):
            return [
                _coerce(rows_schema, row) if isinstance(row, Mapping) else row for row in value
            ]
        return value
    one = group_schema(field)
    if one is not None:
        if isinstance(value, str):
            value = _json_value(value)
        return _coerce(one, value) if isinstance(value, Mapping) else value
    if isinstance(field, fields.List) and isinstance(value, str):
        if value.strip().startswith("["):
            return _json_value(value)
        # A list of strings (embedding tokens) is typed as comma-separated text; numbers in
        # a list (custom sigmas) are converted like single numbers.
        return [_coerce_value(field.inner, part.strip()) for part in value.split(",")
                if part.strip()]
    if isinstance(field, (fields.Dict, fields.Raw)) and not isinstance(field, fields.String) \
            and isinstance(value, str) and type(field).__name__ != "Union":
        return _json_value(value)
    return value


def _json_value(text):
    """``text`` parsed as JSON, else ``text`` (for the schema to refuse beside its field)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _json_list(text):
    """``text`` parsed as a JSON list (a whole ``loras`` value re-posted), else ``text``."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return parsed if isinstance(parsed, list) else text


# -- form values, as the templates read and post them -----------------------------------------

# Integers beyond this lose precision as JavaScript numbers, so their inputs stay text.
JS_SAFE_INTEGER = 2**53 - 1


def row_key(field_name, index, sub):
    """The form name of a list row's subfield: ``loras-0-path``."""
    return f"{field_name}-{index}-{sub}"


def uses_text_box(field):
    """True for an integer field that a number input would round (a 64-bit seed)."""
    return field.kind == "integer" and field.max is not None and field.max > JS_SAFE_INTEGER


def blank_rows(field, rows):
    """How many empty rows to offer after ``rows`` (no "add row" button without JavaScript)."""
    most = int(field.max) if field.max else 5
    wanted = min(most, max(len(rows) + 1, 2))
    return max(wanted - len(rows), 0)


def _text(value):
    return "" if value is None else str(value)


def _row_text(sub, value):
    if sub.multiple and isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, (dict, list)) or sub.kind == "json" and value is not None:
        return json.dumps(value)
    return _text(value)


def values_from_input(fields, data=None):
    """Form values (as the templates read them) for an input dict; defaults where absent.

    ``fields``: :func:`falweb.schemas.describe_fields` of the endpoint.
    """
    values = {}
    for field in fields:
        value = field.default if data is None else data.get(field.name, field.default)
        if field.kind == "boolean":
            values[field.name] = bool(value)
        elif field.kind == "image_size":
            if isinstance(value, dict):
                values[field.name] = CUSTOM_SIZE
                values[f"{field.name}_width"] = _text(value.get("width"))
                values[f"{field.name}_height"] = _text(value.get("height"))
            else:
                values[field.name] = _text(value)
        elif field.kind in ("list", "group"):
            rows = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
            values[field.name] = [
                {sub.name: _row_text(sub, row.get(sub.name)) for sub in field.subfields}
                for row in rows
                if isinstance(row, dict)
            ]
        elif field.multiple and isinstance(value, list):
            values[field.name] = ", ".join(str(item) for item in value)
        elif field.kind == "json":
            values[field.name] = "" if value is None else json.dumps(value)
        else:
            values[field.name] = _text(value)
    return values


def values_from_form(fields, form):
    """Form values from a post, to show the form again; list rows ordered by index.

    Rows are renumbered from 0, as the schema numbers them in its error messages, so a
    message such as ``loras.1.scale`` lands beside the row it is about. A row that is
    entirely blank is dropped; a row with some values is kept, so that the schema can say
    which of its fields is missing.
    """
    values = {}
    for field in fields:
        name = field.name
        if field.kind == "boolean":
            values[name] = any(v.strip().lower() in TRUE_STRINGS for v in form.getlist(name))
        elif field.kind == "image_size":
            values[name] = form.get(name, "")
            for side in ("width", "height"):
                values[f"{name}_{side}"] = form.get(f"{name}_{side}", "")
        elif field.kind in ("list", "group"):
            values[name] = _rows_from_form(field, form)
        else:
            values[name] = form.get(name, "")
    return values


def _rows_from_form(field, form):
    indexed = {}
    for key in form.keys():
        match = _ROW_KEY.fullmatch(key)
        if match is None or match["field"] != field.name:
            continue
        indexed.setdefault(int(match["index"]), {})[match["sub"]] = form.get(key, "")
    names = [sub.name for sub in field.subfields]
    rows = []
    for _, row in sorted(indexed.items()):
        row = {name: row.get(name, "") for name in names}
        if all(_blank(row[name]) for name in names):
            continue
        rows.append(row)
    return rows


def post_data(fields, values):
    """The flat form post :func:`fold_form` folds, built from form values."""
    data = {}
    for field in fields:
        value = values.get(field.name)
        if field.kind == "boolean":
            if value:
                data[field.name] = "on"
        elif field.kind in ("list", "group"):
            for index, row in enumerate(value or []):
                for sub, text in row.items():
                    data[row_key(field.name, index, sub)] = text
        else:
            data[field.name] = value if value is not None else ""
            if field.kind == "image_size":
                for side in ("width", "height"):
                    data[f"{field.name}_{side}"] = values.get(f"{field.name}_{side}", "")
    return data
