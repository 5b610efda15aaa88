"""marshmallow schemas built at run time from the JSON Schema in an endpoint's document.

The fields are the ones the hand-written schemas use (:mod:`falweb.schemas.fields`), so a
generated schema validates, folds form posts, describes its form and words its errors the
same way: strict JSON types, ``image_size`` as :class:`~falweb.schemas.fields.ImageSize`,
``*_url`` strings as :class:`~falweb.schemas.fields.FileUrl`, lists of objects as
``List(Nested(...))``.

What each JSON Schema keyword becomes:

- ``$ref`` (``#/components/schemas/X``) is followed; ``allOf`` merges its parts with the
  siblings beside it (fal wraps single nested objects as ``allOf: [{$ref}]``).
- ``anyOf`` / ``oneOf``: a ``{type: null}`` member (or OAS ``nullable: true``) allows
  ``null``; one member left is that member's field; fal's ``image_size`` pair
  (``ImageSize`` object | preset enum) is :class:`ImageSize`; anything else a
  :class:`Union` that takes the first member the value fits.
- ``enum`` → ``OneOf``; ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``
  (the 2020 numeric form and the OAS 3.0 boolean form) → ``Range``; ``minLength``/
  ``maxLength``/``pattern`` → ``Length``/``Regexp``; ``minItems``/``maxItems`` → ``Length``.
- ``default`` → ``load_default`` (a fresh copy per load for lists and objects).
- ``additionalProperties``: an object with ``properties`` refuses unknown keys unless it is
  ``true`` or a schema (then they are kept); an object without ``properties`` is a ``Dict``
  whose values follow ``additionalProperties``.

Two house rules from the hand-written schemas apply to inputs: a required ``prompt`` may not
be blank, and a string without ``maxLength`` is at most
:data:`~falweb.schemas.fields.MAX_TEXT_LENGTH` characters.
"""

import copy

from marshmallow import INCLUDE
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

from falweb.schemas.common import FalInput
from falweb.schemas.fields import IMAGE_SIZE_PRESETS
from falweb.schemas.fields import MAX_TEXT_LENGTH
from falweb.schemas.fields import FileUrl
from falweb.schemas.fields import ImageSize
from falweb.schemas.fields import Prompt
from falweb.schemas.fields import StrictBoolean
from falweb.schemas.fields import StrictFloat
from falweb.schemas.fields import StrictInteger
from falweb.schemas.fields import Text

#: Fields a form shows above "Advanced" even when optional (as on the hand-written forms).
MAIN_FIELDS = frozenset({"prompt", "negative_prompt", "image_size", "num_images", "image_url"})
#: Inputs fal lists that a person never sets (fal's own bookkeeping); kept off the forms.
HIDDEN_FIELDS = frozenset({"request_id"})
#: Deepest ``$ref`` chain followed; deeper (a recursive type) is accepted as any JSON.
MAX_DEPTH = 12
_REF_PREFIX = "#/components/schemas/"


class SchemaError(ValueError):
    """The document's schema cannot be turned into marshmallow (a broken ``$ref``)."""


class Union(fields.Field):
    """A value that fits one of several fields (JSON Schema ``anyOf``): the first that
    accepts it wins. When exactly one member is of the value's JSON type, that member's own
    error is reported (``"Not a valid string."``) rather than a generic one."""

    default_error_messages = {"invalid": "Must be one of: {kinds}."}

    def __init__(self, members, kinds, **kwargs):
        super().__init__(**kwargs)
        self.members = members
        self.kinds = kinds

    def _deserialize(self, value, attr, data, **kwargs):
        errors = []
        for member in self.members:
            try:
                return member.deserialize(value, attr, data, **kwargs)
            except ValidationError as exc:
                errors.append(exc)
        matching = [exc for exc, kind in zip(errors, self.kinds, strict=True)
                    if kind == json_type(value)]
        if len(matching) == 1:
            raise matching[0]
        raise self.make_error("invalid", kinds=", ".join(self.kinds))


def json_type(value):
    """The JSON Schema type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fresh(default):
    # A list or dict default must be copied per load, or one request could alter the next's.
    if isinstance(default, (list, dict)):
        return lambda: copy.deepcopy(default)
    return default


class Builder:
    """Builds marshmallow schemas for one document's ``components.schemas``.

    :param for_output: outputs are read, not checked: unknown keys are kept, numbers and
        strings are not strict, and no house rule applies.
    """

    def __init__(self, document, *, for_output=False):
        self.components = ((document.get("components") or {}).get("schemas") or {})
        self.for_output = for_output
        self._classes = {}

    # -- JSON Schema plumbing ---------------------------------------------------------------

    def resolve(self, node, depth=0):
        """``node`` with ``$ref`` followed and ``allOf`` merged (siblings win)."""
        if not isinstance(node, dict):
            return {}
        if depth > MAX_DEPTH:
            return {}
        if "$ref" in node:
            target = self._target(node["$ref"])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**self.resolve(target, depth + 1), **rest}
        if "allOf" in node:
            merged = {}
            required = []
            properties = {}
            for part in node["allOf"]:
                part = self.resolve(part, depth + 1)
                properties.update(part.get("properties") or {})
                required += part.get("required") or []
                merged.update(part)
            merged.update({k: v for k, v in node.items() if k != "allOf"})
            if properties:
                merged["properties"] = {**properties, **(node.get("properties") or {})}
                merged["required"] = list(dict.fromkeys(required + (node.get("required") or [])))
            return merged
        return node

    def _target(self, ref):
        if not isinstance(ref, str) or not ref.startswith(_REF_PREFIX):
            raise SchemaError(f"unsupported $ref {ref!r}")
        name = ref[len(_REF_PREFIX):]
        if name not in self.components:
            raise SchemaError(f"$ref to a missing schema: {ref!r}")
        return self.components[name]

    def _ref_name(self, node):
        """The component name behind ``node`` (through one ``allOf`` wrapper), if any."""
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                return node["$ref"][len(_REF_PREFIX):]
            parts = node.get("allOf")
            if isinstance(parts, list) and len(parts) == 1:
                return self._ref_name(parts[0])
        return None

    # -- schemas ----------------------------------------------------------------------------

    def schema_class(self, node, name=None, *, top=False, depth=0):
        """A Schema class for the object schema ``node`` (properties in the document's
        ``x-fal-order-properties`` order)."""
        ref_name = self._ref_name(node)
        key = (ref_name, top) if ref_name else None
        if key and key in self._classes:
            return self._classes[key]
        node = self.resolve(node)
        properties = node.get("properties") or {}
        required = set(node.get("required") or [])
        order = [p for p in node.get("x-fal-order-properties") or [] if p in properties]
        order += [p for p in properties if p not in order]
        declared = {
            prop: self.field(properties[prop], prop, required=prop in required, depth=depth + 1)
            for prop in order
        }
        extra = node.get("additionalProperties")
        unknown = INCLUDE if self.for_output or extra is True or isinstance(extra, dict) \
            else RAISE
        base = FalInput if top and not self.for_output else Schema
        meta = type("Meta", (), {"unknown": unknown, "ordered": True})
        cls = type(name or ref_name or node.get("title") or "Generated", (base,),
                   {**declared, "Meta": meta,
                    "__doc__": node.get("description") or node.get("title") or ""})
        if key:
            self._classes[key] = cls
        return cls

    # -- fields -----------------------------------------------------------------------------

    def field(self, raw, name, *, required=False, depth=0):
        """The marshmallow field for property ``name`` with JSON Schema ``raw``."""
        node = self.resolve(raw)
        options = {"required": required, "metadata": self._metadata(node, name, required)}
        if "default" in node and not required:
            options["load_default"] = _fresh(node["default"])
            if self.for_output:
                options.pop("load_default")
        if node.get("nullable") is True:
            options["allow_none"] = True
        if depth > MAX_DEPTH:
            return fields.Raw(**options)
        members = node.get("anyOf") or node.get("oneOf")
        if isinstance(members, list):
            kept = [m for m in members if self.resolve(m).get("type") != "null"]
            if len(kept) < len(members):
                options["allow_none"] = True
            size = self._image_size(kept)
            if size is not None and not self.for_output:
                return ImageSize(min_side=size[0], max_side=size[1], **options)
            if len(kept) == 1:
                merged = {**self.resolve(kept[0]),
                          **{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}}
                field = self.field(merged, name, required=required, depth=depth + 1)
                field.allow_none = field.allow_none or options.get("allow_none", False)
                return field
            alternatives = [self.field(m, name, depth=depth + 1) for m in kept]
            kinds = [self.resolve(m).get("type") or "object" for m in kept]
            return Union(alternatives, kinds, **options)
        return self._typed(node, name, options, depth)

    def _typed(self, node, name, options, depth):
        kind = node.get("type")
        if isinstance(kind, list):  # 2020 style ["string", "null"]
            if "null" in kind:
                options["allow_none"] = True
            kind = next((k for k in kind if k != "null"), None)
        if kind is None and "enum" in node:
            kind = json_type(node["enum"][0]) if node["enum"] else "string"
        if kind is None and "properties" in node:
            kind = "object"
        validators = []
        if "enum" in node:
            validators.append(validate.OneOf(node["enum"]))
        if kind in ("integer", "number"):
            validators += _range(node)
            cls = (fields.Integer if kind == "integer" else fields.Float) if self.for_output \
                else (StrictInteger if kind == "integer" else StrictFloat)
            return cls(validate=validators, **options)
        if kind == "boolean":
            return (fields.Boolean if self.for_output else StrictBoolean)(**options)
        if kind == "string":
            if "minLength" in node or ("maxLength" in node and self.for_output):
                validators.append(validate.Length(min=node.get("minLength"),
                                                  max=node.get("maxLength")))
            if isinstance(node.get("pattern"), str):
                validators.append(validate.Regexp(node["pattern"]))
            if self.for_output:
                return fields.String(validate=validators, **options)
            if name.endswith("_url") and "enum" not in node:
                return FileUrl(validate=validators, **options)
            max_length = node.get("maxLength", MAX_TEXT_LENGTH)
            if name == "prompt" and options["required"]:
                return Prompt(max_length=max_length, validate=validators, **options)
            return Text(max_length=max_length, validate=validators, **options)
        if kind == "array":
            items = node.get("items") or {}
            inner = self._item(items, name, depth)
            if "minItems" in node or "maxItems" in node:
                validators.append(validate.Length(min=node.get("minItems"),
                                                  max=node.get("maxItems")))
            return fields.List(inner, validate=validators, **options)
        if kind == "object":
            if node.get("properties"):
                return fields.Nested(self.schema_class(node, depth=depth), **options)
            extra = node.get("additionalProperties")
            values = self.field(extra, name, depth=depth + 1) if isinstance(extra, dict) \
                and extra else None
            return fields.Dict(keys=fields.String(), values=values, **options)
        return fields.Raw(validate=validators, **options)

    def _item(self, items, name, depth):
        resolved = self.resolve(items)
        if resolved.get("type") == "object" or resolved.get("properties"):
            if resolved.get("properties"):
                return fields.Nested(self.schema_class(items, depth=depth))
        # "image_urls" items are file URLs like "image_url".
        item_name = name[:-1] if name.endswith("_urls") else name
        return self.field(items, item_name, depth=depth + 1)

    def _image_size(self, members):
        """(min side, max side) when ``members`` is fal's ImageSize | preset pair."""
        if len(members) != 2:
            return None
        resolved = [self.resolve(m) for m in members]
        objects = [r for r in resolved if set(r.get("properties") or {}) == {"width", "height"}]
        presets = [r for r in resolved if r.get("type") == "string" and r.get("enum")]
        if len(objects) != 1 or len(presets) != 1:
            return None
        if not set(presets[0]["enum"]) <= set(IMAGE_SIZE_PRESETS):
            return None
        side = self.resolve(objects[0]["properties"]["width"])
        low, _, high, _ = _bounds(side)
        return (int(low) if low is not None else 1, int(high) if high is not None else 14142)

    def _metadata(self, node, name, required):
        meta = {"description": " ".join(str(node.get("description") or "").split()),
                "title": node.get("title") or None,
                "advanced": not required and name not in MAIN_FIELDS}
        examples = node.get("examples")
        if not isinstance(examples, list) and "example" in node:
            examples = [node["example"]]
        if isinstance(examples, list) and examples:
            meta["examples"] = examples
            if isinstance(examples[0], (str, int, float)) and not isinstance(examples[0], bool):
                meta["example"] = str(examples[0])
        if name in HIDDEN_FIELDS:
            meta["hidden"] = True
        if node.get("type") == "string" and ("prompt" in name or node.get("maxLength", 0) > 500):
            meta["widget"] = "textarea"
        if name == "negative_prompt":
            meta["allow_blank"] = True
        low, _, high, _ = _bounds(node)
        if node.get("type") == "number" and low is not None and high is not None:
            meta["step"] = 0.01 if high - low <= 2 else 0.1
        if not meta["title"]:
            meta.pop("title")
        return meta


def _bounds(node):
    """(low, low exclusive?, high, high exclusive?) of a number schema, both JSON Schema
    spellings of exclusiveness understood (2020: a number; OAS 3.0: a boolean)."""
    low, high = node.get("minimum"), node.get("maximum")
    low_exclusive = high_exclusive = False
    exclusive = node.get("exclusiveMinimum")
    if isinstance(exclusive, bool):
        low_exclusive = exclusive and low is not None
    elif isinstance(exclusive, (int, float)):
        if low is None or exclusive >= low:
            low, low_exclusive = exclusive, True
    exclusive = node.get("exclusiveMaximum")
    if isinstance(exclusive, bool):
        high_exclusive = exclusive and high is not None
    elif isinstance(exclusive, (int, float)):
        if high is None or exclusive <= high:
            high, high_exclusive = exclusive, True
    if node.get("type") == "integer":
        # An integer above an exclusive 0 is at least 1: forms and errors say so plainly.
        if low is not None and low_exclusive:
            low, low_exclusive = int(low) + 1, False
        if high is not None and high_exclusive:
            high, high_exclusive = int(high) - 1 if high == int(high) else int(high), False
    return low, low_exclusive, high, high_exclusive


def _range(node):
    low, low_exclusive, high, high_exclusive = _bounds(node)
    if low is None and high is None:
        return []
    return [validate.Range(min=low, max=high, min_inclusive=not low_exclusive,
                           max_inclusive=not high_exclusive)]
