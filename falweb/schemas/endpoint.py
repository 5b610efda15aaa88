"""What falweb knows of one endpoint, whether hand-written (:mod:`falweb.schemas.catalog`) or
made from its OpenAPI document (:mod:`falweb.openapi.endpoints`)."""

from dataclasses import dataclass
from dataclasses import field


@dataclass(frozen=True)
class Endpoint:
    """One fal endpoint: its id, what it takes and what it answers.

    ``file_fields`` are input fields holding file URLs (uploaded through storage by forms and
    clients); ``format_field`` names the jpeg/png field, which fal spells differently per
    model family.
    """

    endpoint_id: str
    title: str
    description: str
    input_schema: type
    output_schema: type
    aliases: tuple = ()
    realtime: bool = False
    file_fields: tuple = ()
    format_field: str = "format"
    category: str = "text-to-image"
    tags: tuple = ()
    #: The OpenAPI document a generated endpoint was built from (``None``: hand-written).
    document: dict | None = field(default=None, compare=False, hash=False, repr=False)
    #: Where that document came from: "builtin", a folder, "fal", a registered source.
    source: str = ""
