"""Hand-written schemas completed from the endpoint's shipped OpenAPI document.

A hand-written schema models what falweb's engines use, with falweb's own limits (see
``tests/test_openapi_schemas.py``, which holds every field it declares to the document). The
document's other fields (fal-ai/lora's ControlNet, IP-Adapter, IC-Light, tiling...) are added
as generated, so a fal-shaped input is never refused as "unknown" here while fal accepts it.
"""


def with_documented_fields(schema_class, endpoint_id):
    """A subclass of ``schema_class`` that also declares the fields of ``endpoint_id``'s
    shipped document it lacks; ``schema_class`` itself when there is no such document."""
    from falweb.openapi.documents import BUILTIN
    from falweb.openapi.documents import input_and_output
    from falweb.schemas.from_json_schema import Builder

    document = BUILTIN.document(endpoint_id)
    if document is None:
        return schema_class
    generated = Builder(document).schema_class(input_and_output(document)[0], top=True)
    own = schema_class._declared_fields
    extras = {name: field for name, field in generated._declared_fields.items()
              if name not in own}
    if not extras:
        return schema_class
    return type(schema_class.__name__, (schema_class,),
                {**extras, "__doc__": schema_class.__doc__,
                 "__module__": schema_class.__module__,
                 "modelled_fields": tuple(own)})
