"""Custom marshmallow fields for fal's input types.

The API path is strict: a JSON number must be a number, a boolean a boolean. HTML forms post
strings, and :mod:`falweb.schemas.forms` turns those into typed values *before* these fields
see them, so one set of fields serves both paths.
"""

import numbers
from urllib.parse import urlsplit

from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate

#: fal's ``image_size`` presets → (width, height), from fal's "Model Arguments" page.
IMAGE_SIZE_PRESETS = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

#: ``ImageSize`` width/height default when an object omits one (fal's ``ImageSize`` type).
IMAGE_SIZE_SIDE_DEFAULT = 512

#: fal seeds are unsigned 64-bit values; anything larger cannot be a seed fal would accept.
SEED_MAX = 2**64 - 1

# Messages the error translators recognise (see errors.py); keep them in one place.
MSG_MISSING = "Missing data for required field."
MSG_UNKNOWN = "Unknown field."
MSG_NULL = "Field may not be null."
MSG_NOT_INTEGER = "Not a valid integer."
MSG_NOT_NUMBER = "Not a valid number."
MSG_NOT_BOOLEAN = "Not a valid boolean."
MSG_NOT_STRING = "Not a valid string."
MSG_NOT_LIST = "Not a valid list."
MSG_NOT_OBJECT = "Invalid input type."


class StrictInteger(fields.Integer):
    """An integer that must arrive as a JSON integer: no strings, floats or booleans."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)


class StrictFloat(fields.Float):
    """A float that must arrive as a JSON number (integers welcome), never as a string."""

    def _validated(self, value):
        # Number already refuses booleans; strings are what a lax float() would accept.
        if not isinstance(value, numbers.Real):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """A boolean that must arrive as JSON ``true``/``false``, not ``"on"`` or ``1``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


#: Longest text (prompt, negative prompt) accepted where an endpoint's document sets no
#: ``maxLength``. fal's image documents set none; the longest one they do set is 2,500
#: (kling-video), and CLIP reads ~77 tokens. 10,000 characters refuses only abuse (a 1 MB
#: prompt made a 2 MB request page) and never a real prompt.
MAX_TEXT_LENGTH = 10_000


class Text(fields.String):
    """A string of at most ``max_length`` characters (default :data:`MAX_TEXT_LENGTH`)."""

    default_error_messages = {"too_long": "Longer than {max_length} characters."}

    def __init__(self, *args, max_length=MAX_TEXT_LENGTH, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if self.max_length is not None and len(value) > self.max_length:
            raise self.make_error("too_long", max_length=self.max_length)
        return value


class Prompt(Text):
    """A prompt: a string with at least one non-space character."""

    default_error_messages = {"blank": "The prompt must not be empty."}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not value.strip():
            raise self.make_error("blank")
        return value


class FileUrl(fields.String):
    """A file input: an ``http(s)://`` URL or a ``data:`` URI (fal accepts both)."""

    default_error_messages = {
        "scheme": "Must be an http(s) URL or a data: URI.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value.startswith("data:"):
            # "data:[<mediatype>][;base64],<data>": without the comma there is no payload.
            if "," not in value:
                raise self.make_error("scheme")
            return value
        try:
            parts = urlsplit(value)
        except ValueError:  # e.g. an unbalanced IPv6 bracket
            raise self.make_error("scheme") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise self.make_error("scheme")
        return value


def _multiple_of(step):
    def check(pixels):
        if pixels % step:
            raise ValidationError(f"Must be a multiple of {step} pixels.")

    return check


def image_size_object_schema(min_side, max_side, multiple_of=None):
    """A schema for fal's ``ImageSize`` object with these limits; each side defaults to 512."""
    validators = [
        validate.Range(min=min_side, max=max_side, error="Must be between {min} and {max} pixels.")
    ]
    if multiple_of:
        validators.append(_multiple_of(multiple_of))
    return Schema.from_dict(
        {
            side: StrictInteger(load_default=IMAGE_SIZE_SIDE_DEFAULT, validate=validators)
            for side in ("width", "height")
        },
        name="ImageSize",
    )()


class ImageSize(fields.Field):
    """fal ``image_size``: a preset name or ``{"width": int, "height": int}``.

    marshmallow has no union field, so this one dispatches on the value's type. Errors in the
    object keep their shape (``{"width": [...]}``) so they can be shown beside each box.

    :param min_side: smallest width/height accepted.
    :param max_side: largest width/height accepted.
    :param multiple_of: when set, width and height must be multiples of it (fal-ai/lora: 8).
    """

    default_error_messages = {
        "invalid": "Must be one of: {presets}; or an object with width and height.",
        "preset": "Must be one of: {presets}.",
    }

    def __init__(self, *, min_side=64, max_side=2048, multiple_of=None, **kwargs):
        self.min_side = min_side
        self.max_side = max_side
        self.multiple_of = multiple_of
        self._object_schema = image_size_object_schema(min_side, max_side, multiple_of)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        presets = ", ".join(IMAGE_SIZE_PRESETS)
        if isinstance(value, str):
            if value not in IMAGE_SIZE_PRESETS:
                raise self.make_error("preset", presets=presets)
            return value
        if not isinstance(value, dict):
            raise self.make_error("invalid", presets=presets)
        # Unknown keys are refused: a typo like "heigth" must not silently become 512.
        return self._object_schema.load(value)

    def _serialize(self, value, attr, obj, **kwargs):
        return dict(value) if isinstance(value, dict) else value


def resolve_image_size(value):
    """Return ``(width, height)`` for an already validated ``image_size`` value.

    :param value: a preset name or a ``{"width", "height"}`` dict.
    :raise KeyError: for a name that is not a preset.
    """
    if isinstance(value, dict):
        return (
            value.get("width", IMAGE_SIZE_SIDE_DEFAULT),
            value.get("height", IMAGE_SIZE_SIDE_DEFAULT),
        )
    return IMAGE_SIZE_PRESETS[value]

