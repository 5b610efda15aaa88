"""Pieces every fal text-to-image input shares: the base input schema, the nested
``LoraWeight``/``Embedding`` types and one factory per common field.

Factories (not shared field instances) because endpoints differ in defaults and ranges, and
a marshmallow field instance must belong to one schema. Field metadata carries what the form
generator needs: ``description`` (fal's wording), ``advanced`` (hidden under "Advanced"),
``widget`` (overrides the kind guessed from the field class), ``title``, ``step``,
``example``, ``allow_blank`` (a blank form value is a real value, not "use the default"),
``hidden`` (API-only field, never rendered).
"""

from marshmallow import Schema
from marshmallow import fields
from marshmallow import pre_load
from marshmallow import validate

from falweb.schemas.fields import SEED_MAX
from falweb.schemas.fields import FileUrl
from falweb.schemas.fields import ImageSize
from falweb.schemas.fields import Prompt
from falweb.schemas.fields import StrictBoolean
from falweb.schemas.fields import StrictFloat
from falweb.schemas.fields import StrictInteger
from falweb.schemas.fields import Text

#: Most LoRA rows a form or request may carry; more is a mistake, not a use case.
MAX_LORAS = 5

#: fal's long default negative prompt for fal-ai/realistic-vision, verbatim from the docs.
REALISTIC_VISION_NEGATIVE_PROMPT = (
    "(worst quality, low quality, normal quality, lowres, low details, oversaturated, "
    "undersaturated, overexposed, underexposed, grayscale, bw, bad photo, bad photography, "
    "bad art:1.4), (watermark, signature, text font, username, error, logo, words, letters, "
    "digits, autograph, trademark, name:1.2), (blur, blurry, grainy), morbid, ugly, "
    "asymmetrical, mutated malformed, mutilated, poorly lit, bad shadow, draft, cropped, "
    "out of frame, cut off, censored, jpeg artifacts, out of focus, glitch, duplicate, "
    "(airbrushed, cartoon, anime, semi-realistic, cgi, render, blender, digital art, manga, "
    "amateur:1.3), (3D ,3D Game, 3D Game Scene, 3D Character:1.1), (bad hands, bad anatomy, "
    "bad body, bad face, bad teeth, bad arms, bad legs, deformities:1.3)"
)


class FalInput(Schema):
    """Base of every endpoint input schema.

    ``FalInput(form=True)`` reshapes HTML form posts before validation (see
    :func:`falweb.schemas.forms.fold_form`); ``form=False`` (API callers) validates the JSON
    exactly as sent.
    """

    def __init__(self, *args, form=False, **kwargs):
        self.form = form
        super().__init__(*args, **kwargs)

    @pre_load
    def _fold_form(self, data, **kwargs):
        if not self.form:
            return data
        # Imported here: forms.py inspects schemas, so it must not be imported by them first.
        from falweb.schemas.forms import fold_form

        return fold_form(self, data)


class LoraWeightSchema(Schema):
    """fal ``LoraWeight``."""

    path = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "URL or the path to the LoRA weights. Or HF model name.",
            "title": "Path",
        },
    )
    scale = StrictFloat(
        load_default=1.0,
        validate=validate.Range(min=0, max=4),
        metadata={
            "description": (
                "The scale of the LoRA weight. This is used to scale the LoRA weight before "
                "merging it with the base model."
            ),
            "step": 0.05,
        },
    )


class SdLoraWeightSchema(LoraWeightSchema):
    """fal ``LoraWeight`` of the Stable Diffusion endpoints (fast-sdxl, realistic-vision),
    whose documents bound ``scale`` to 0..1. Their ``force`` flag is not modelled."""

    scale = StrictFloat(
        load_default=1.0,
        validate=validate.Range(min=0, max=1),
        metadata=dict(LoraWeightSchema._declared_fields["scale"].metadata),
    )


class EmbeddingSchema(Schema):
    """fal ``Embedding`` (textual inversion)."""

    path = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "URL or the path to the embedding weights.", "title": "Path"},
    )
    tokens = fields.List(
        fields.String(),
        load_default=lambda: ["<s0>", "<s1>"],
        metadata={"description": "The list of tokens to use for the embedding."},
    )


# --- field factories -----------------------------------------------------------------------


def prompt():
    return Prompt(
        required=True,
        metadata={
            "description": (
                "The prompt to use for generating the image. Be as descriptive as possible "
                "for best results."
            ),
            "widget": "textarea",
            "advanced": False,
        },
    )


def negative_prompt(default=""):
    return Text(
        load_default=default,
        metadata={
            "description": (
                "The negative prompt to use. Use it to address details that you don't want "
                "in the image."
            ),
            "widget": "textarea",
            "advanced": False,
            "allow_blank": True,
        },
    )


def image_size(default, *, multiple_of=None):
    description = "The size of the generated image: a preset, or a custom width and height."
    if multiple_of:
        description += f" Custom sizes must be multiples of {multiple_of}."
    # A dict default must be copied per load, or one request could alter the next's default.
    load_default = (lambda: dict(default)) if isinstance(default, dict) else default
    return ImageSize(
        load_default=load_default,
        multiple_of=multiple_of,
        metadata={"description": description, "advanced": False},
    )


def num_inference_steps(default, *, maximum=150):
    return StrictInteger(
        load_default=default,
        validate=validate.Range(min=1, max=maximum),
        metadata={
            "description": "The number of inference steps to perform.",
            "title": "Inference steps",
        },
    )


def guidance_scale(default, *, minimum=0, maximum=20):
    return StrictFloat(
        load_default=float(default),
        validate=validate.Range(min=minimum, max=maximum),
        metadata={
            "description": (
                "The CFG (Classifier Free Guidance) scale is a measure of how close you want "
                "the model to stick to your prompt when looking for a related image to show "
                "you."
            ),
            "title": "Guidance scale (CFG)",
            "step": 0.1,
        },
    )


def loras(*, max_rows=MAX_LORAS, row=LoraWeightSchema):
    return fields.List(
        fields.Nested(row),
        load_default=list,
        validate=validate.Length(
            max=max_rows, error=f"At most {max_rows} LoRA weights are allowed."
        ),
        metadata={"description": "The list of LoRA weights to use.", "title": "LoRA weights"},
    )


def embeddings(*, max_rows=MAX_LORAS):
    return fields.List(
        fields.Nested(EmbeddingSchema),
        load_default=list,
        validate=validate.Length(
            max=max_rows, error=f"At most {max_rows} embeddings are allowed."
        ),
        metadata={"description": "The list of embeddings to use."},
    )


def expand_prompt():
    return StrictBoolean(
        load_default=False,
        metadata={
            "description": "If set to true, the prompt will be expanded with additional prompts."
        },
    )


def num_images(*, maximum=8):
    return StrictInteger(
        load_default=1,
        validate=validate.Range(min=1, max=maximum),
        metadata={
            "description": "The number of images to generate.",
            "title": "Number of images",
            "advanced": False,
        },
    )


def seed():
    # No default: absent means "pick a random seed", as on fal. null is accepted too, because
    # fal's own schema types it as an optional integer.
    return StrictInteger(
        allow_none=True,
        validate=validate.Range(min=0, max=SEED_MAX),
        metadata={
            "description": (
                "The same seed and the same prompt given to the same version of Stable "
                "Diffusion will output the same image every time."
            ),
        },
    )


def enable_safety_checker(default=True):
    return StrictBoolean(
        load_default=default,
        metadata={"description": "If set to true, the safety checker will be enabled."},
    )


def sync_mode(default=False):
    return StrictBoolean(
        load_default=default,
        metadata={
            "description": (
                "If set to true, the function will wait for the image to be generated and "
                "uploaded before returning the response. This will increase the latency of "
                "the function but it allows you to get the image directly in the response "
                "without going through the CDN."
            ),
        },
    )


def image_format(default="jpeg"):
    return fields.String(
        load_default=default,
        validate=validate.OneOf(["jpeg", "png"]),
        metadata={"description": "The format of the generated image.", "title": "Format"},
    )


def safety_checker_version():
    return fields.String(
        load_default="v1",
        validate=validate.OneOf(["v1", "v2"]),
        metadata={
            "description": (
                "The version of the safety checker to use. v1 is the default CompVis safety "
                "checker. v2 uses a custom ViT model."
            ),
        },
    )


def request_id():
    # Listed in fal's fast-sdxl/LCM types; accepted so fal-shaped clients are not refused,
    # but never shown on a form, and not added to inputs that did not send it (it would
    # show up in every stored input and "copy as JSON" for nothing).
    return fields.String(metadata={"hidden": True, "description": ""})


def image_url():
    return FileUrl(
        required=True,
        metadata={
            "description": "The URL of the image to use as a starting point.",
            "title": "Image",
            "advanced": False,
        },
    )


def strength(default=0.95):
    return StrictFloat(
        load_default=default,
        validate=validate.Range(min=0, max=1),
        metadata={
            "description": (
                "Determines how much the generated image resembles the initial image: "
                "0 keeps it, 1 ignores it."
            ),
            "step": 0.01,
            "advanced": False,
        },
    )
