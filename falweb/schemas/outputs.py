"""Output schemas: what an endpoint answers (fal's common output and its variants).

Outputs keep unknown keys (``INCLUDE``): fal adds fields over time and a client reading a
result must not break on them.
"""

from marshmallow import INCLUDE
from marshmallow import Schema
from marshmallow import fields


class ImageSchema(Schema):
    """fal ``Image``: a generated file and what is known about it."""

    class Meta:
        unknown = INCLUDE

    url = fields.String(required=True)
    width = fields.Integer()
    height = fields.Integer()
    content_type = fields.String(load_default="image/jpeg", dump_default="image/jpeg")
    file_name = fields.String()
    file_size = fields.Integer()


class FileSchema(Schema):
    """fal ``File`` (used by fal-ai/lora's debug outputs)."""

    class Meta:
        unknown = INCLUDE

    url = fields.String(required=True)
    content_type = fields.String()
    file_name = fields.String()
    file_size = fields.Integer()
    file_data = fields.String()


class ImagesOutputSchema(Schema):
    """Images, the seed used and the NSFW flags (parallel to ``images``)."""

    class Meta:
        unknown = INCLUDE

    images = fields.List(
        fields.Nested(ImageSchema),
        required=True,
        metadata={"description": "The generated image files info."},
    )
    # fal seeds can exceed 2**63: a plain Python int, no range.
    seed = fields.Integer(
        metadata={
            "description": (
                "Seed of the generated Image. It will be the same value of the one passed in "
                "the input or the randomly generated that was used in case none was passed."
            )
        }
    )
    has_nsfw_concepts = fields.List(
        fields.Boolean(),
        metadata={"description": "Whether the generated images contain NSFW concepts."},
    )


class TextToImageOutputSchema(ImagesOutputSchema):
    """fal's common output: images, timings, seed, has_nsfw_concepts, prompt."""

    # {"inference": seconds} on the wire.
    timings = fields.Dict(keys=fields.String(), values=fields.Float())
    prompt = fields.String(metadata={"description": "The prompt used for generating the image."})


class LoraOutputSchema(ImagesOutputSchema):
    """fal-ai/lora's output: no ``timings`` and no ``prompt``; optional debug latents."""

    debug_latents = fields.Nested(FileSchema)
    debug_per_pass_latents = fields.Nested(FileSchema)
