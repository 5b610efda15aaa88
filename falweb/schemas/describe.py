"""Describe an endpoint's input fields for a form generator, read from the schema itself."""

from dataclasses import dataclass

from marshmallow import fields
from marshmallow import missing
from marshmallow import validate

from falweb.schemas.fields import IMAGE_SIZE_PRESETS
from falweb.schemas.fields import IMAGE_SIZE_SIDE_DEFAULT
from falweb.schemas.fields import FileUrl
from falweb.schemas.fields import ImageSize
from falweb.schemas.forms import group_schema
from falweb.schemas.forms import list_row_schema

#: Fields shown above "Advanced" unless their metadata says otherwise; required fields are
#: never advanced (a form must show what it cannot do without).
MAIN_FIELDS = frozenset(
    {"prompt", "negative_prompt", "image_size", "num_images", "image_url", "strength"}
)


@dataclass(frozen=True)
class FieldInfo:
    """What a form needs to render one input field.

    ``kind`` is one of ``text``, ``textarea``, ``integer``, ``number``, ``boolean``,
    ``select``, ``image_size``, ``list``, ``group`` (one nested object), ``file``, ``files``
    (``*_urls``) or ``json`` (a value the form takes as JSON text). For ``image_size``,
    ``choices`` are the presets and ``subfields`` the custom width/height; for ``list``
    (and ``group``), ``subfields`` describe one row and ``max`` is the most rows.
    ``multiple`` marks a text box holding a comma-separated list (embedding tokens).
    ``example`` is a placeholder suggestion.
    """

    name: str
    kind: str
    label: str
    description: str = ""
    default: object = None
    required: bool = False
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    step: float | None = None
    advanced: bool = True
    subfields: tuple = ()
    multiple: bool = False
    example: str | None = None


def describe_fields(endpoint):
    """Return a list of :class:`FieldInfo` for ``endpoint``'s input, main fields first.

    Within the main and the advanced group, fields keep the schema's declaration order.
    Hidden (API-only) fields are left out.
    """
    schema = endpoint.input_schema()
    infos = [
        _describe(name, field)
        for name, field in schema.fields.items()
        if not field.metadata.get("hidden")
    ]
    # sorted() is stable, so declaration order survives inside each group.
    return sorted(infos, key=lambda info: info.advanced)


def _label(name, field):
    return field.metadata.get("title") or name.replace("_", " ").capitalize()


def _default(field):
    value = field.load_default
    if value is missing:
        return None
    return value() if callable(value) else value


def _describe(name, field):
    meta = field.metadata
    advanced = meta.get("advanced", name not in MAIN_FIELDS)
    info = {
        "name": name,
        "label": _label(name, field),
        "description": meta.get("description", ""),
        "default": _default(field),
        "required": field.required,
        "advanced": False if field.required else advanced,
        "example": meta.get("example"),
        "step": meta.get("step"),
    }
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            info["min"], info["max"] = validator.min, validator.max
        elif isinstance(validator, validate.OneOf):
            info["choices"] = tuple(validator.choices)
        elif isinstance(validator, validate.Length) and isinstance(field, fields.List):
            info["max"] = validator.max
    info["kind"] = meta.get("widget") or _kind(field, info)
    if isinstance(field, ImageSize):
        info["choices"] = tuple(IMAGE_SIZE_PRESETS)
        info["subfields"] = tuple(
            FieldInfo(
                name=side,
                kind="integer",
                label=side.capitalize(),
                default=IMAGE_SIZE_SIDE_DEFAULT,
                min=field.min_side,
                max=field.max_side,
                step=field.multiple_of or 1,
                advanced=False,
            )
            for side in ("width", "height")
        )
    row_schema = list_row_schema(field) or group_schema(field)
    if row_schema is not None:
        info["subfields"] = tuple(
            _describe(sub, subfield) for sub, subfield in row_schema.fields.items()
        )
        if list_row_schema(field) is not None:
            info["default"] = []
        else:
            info["max"] = 1
    if isinstance(field, fields.List) and row_schema is None:
        info["multiple"] = True
    if info["kind"] == "integer" and info["step"] is None:
        info["step"] = 1
    return FieldInfo(**info)


def _kind(field, info):
    if isinstance(field, ImageSize):
        return "image_size"
    if isinstance(field, FileUrl):
        return "file"
    if info.get("choices"):
        return "select"
    if isinstance(field, fields.Boolean):
        return "boolean"
    if isinstance(field, fields.Integer):
        return "integer"
    if isinstance(field, fields.Float):
        return "number"
    if isinstance(field, fields.List):
        if list_row_schema(field) is not None:
            return "list"
        return "files" if isinstance(field.inner, FileUrl) else "text"
    if group_schema(field) is not None:
        return "group"
    if isinstance(field, (fields.Dict, fields.Raw)) and not isinstance(field, fields.String) \
            and type(field).__name__ != "Union":
        return "json"
    return "text"
