"""An endpoint's example input, read from its document's ``examples``.

fal's documents carry examples per property, not per input: the example input is every
property that has one, plus a made-up value for a required property that has none (the first
enum choice, the lower bound, ``"example"``). The form's "example" button, the CLI and the
tests use it.
"""

from marshmallow import fields
from marshmallow import validate


def example_input(endpoint):
    """A dict of example values for ``endpoint``'s input (required fields always present).

    A hand-written endpoint with a document takes the document's examples.
    """
    from falweb.schemas.catalog import documented_endpoint

    if endpoint.document is None:
        endpoint = documented_endpoint(endpoint.endpoint_id) or endpoint
    example = {}
    for name, field in endpoint.input_schema().fields.items():
        examples = field.metadata.get("examples")
        if field.metadata.get("hidden"):
            continue
        if isinstance(examples, list) and examples:
            example[name] = examples[0]
        elif field.required:
            example[name] = _made_up(field)
    return example


def has_examples(endpoint):
    """True when the endpoint's document (or schema) gives an example for some field."""
    from falweb.schemas.catalog import documented_endpoint

    if endpoint.document is None:
        endpoint = documented_endpoint(endpoint.endpoint_id) or endpoint
    return any(field.metadata.get("examples") or field.metadata.get("example")
               for field in endpoint.input_schema().fields.values())


def _made_up(field):
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            return list(validator.choices)[0]
        if isinstance(validator, validate.Range) and validator.min is not None:
            low = validator.min if validator.min_inclusive else validator.min + 1
            return int(low) if isinstance(field, fields.Integer) else float(low)
    if isinstance(field, fields.Boolean):
        return False
    if isinstance(field, fields.Integer):
        return 1
    if isinstance(field, fields.Float):
        return 1.0
    if isinstance(field, fields.List):
        return []
    if isinstance(field, fields.Nested):
        return {name: _made_up(sub) for name, sub in field.schema.fields.items() if sub.required}
    return "example"
