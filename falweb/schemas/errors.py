"""Translate marshmallow ``ValidationError.messages`` for fal's API and for HTML forms."""

from falweb.schemas import fields as f

# marshmallow's message → (fal's msg, fal's type). fal answers 422 in FastAPI's (pydantic 1)
# shape; the types let fal-shaped clients tell a missing field from a bad value.
_FAL_MESSAGES = {
    f.MSG_MISSING: ("field required", "value_error.missing"),
    f.MSG_UNKNOWN: ("extra fields not permitted", "value_error.extra"),
    f.MSG_NULL: ("none is not an allowed value", "type_error.none.not_allowed"),
    f.MSG_NOT_INTEGER: ("value is not a valid integer", "type_error.integer"),
    f.MSG_NOT_NUMBER: ("value is not a valid float", "type_error.float"),
    f.MSG_NOT_BOOLEAN: ("value could not be parsed to a boolean", "type_error.bool"),
    f.MSG_NOT_STRING: ("str type expected", "type_error.str"),
    f.MSG_NOT_LIST: ("value is not a valid list", "type_error.list"),
    f.MSG_NOT_OBJECT: ("value is not a valid dict", "type_error.dict"),
}

#: Key marshmallow uses for errors about the whole object rather than one field.
SCHEMA_KEY = "_schema"

FORM_REQUIRED = "This field is required."


def _walk(messages, path=()):
    """Yield ``(path, message)`` for every leaf message; ``_schema`` adds nothing to the path."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _walk(value, path if key == SCHEMA_KEY else (*path, key))
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            yield from _walk(item, path)
    else:
        yield path, str(messages)


def _loc_part(key):
    # List indexes arrive as ints (loras[0]); anything else becomes a string key.
    return key if isinstance(key, int) and not isinstance(key, bool) else str(key)


def fal_detail(messages):
    """Return fal's 422 ``detail`` list for marshmallow ``err.messages``.

    Each item is ``{"loc": ["body", field, ...], "msg": str, "type": str}``; nested keys and
    list indexes (as ints) follow the field name. Never raises.
    """
    detail = []
    for path, message in _walk(messages):
        msg, kind = _FAL_MESSAGES.get(message, (message, "value_error"))
        detail.append(
            {"loc": ["body", *(_loc_part(key) for key in path)], "msg": msg, "type": kind}
        )
    return detail


def form_errors(messages):
    """Return ``{"field" | "image_size.width" | "loras.0.path": [messages]}`` for a form.

    Errors about the whole post are under ``"_schema"``. Never raises.
    """
    errors = {}
    for path, message in _walk(messages):
        key = ".".join(str(part) for part in path) or SCHEMA_KEY
        if message == f.MSG_MISSING:
            message = FORM_REQUIRED
        errors.setdefault(key, []).append(message)
    return errors
