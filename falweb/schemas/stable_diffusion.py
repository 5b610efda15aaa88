"""Stable Diffusion family inputs: realistic-vision, fast-sdxl (+ image-to-image), LCM."""

from marshmallow import fields
from marshmallow import validate

from falweb.schemas import common
from falweb.schemas.common import REALISTIC_VISION_NEGATIVE_PROMPT
from falweb.schemas.common import FalInput
from falweb.schemas.fields import StrictFloat

#: The seed's example input uses this model; fal lists no default, so it is ours (see below).
REALISTIC_VISION_MODEL = "SG161222/Realistic_Vision_V6.0_B1_noVAE"


class RealisticVisionInput(FalInput):
    """``fal-ai/realistic-vision`` exactly as the seed documents it (fal's 2025-03 schema).

    ``model_name`` has no default in the docs; the seed's own example input sends
    ``SG161222/Realistic_Vision_V6.0_B1_noVAE``, so that is the default here. ``image_size``
    prints as ``[object Object]`` in the docs: an object default, i.e. fal's ``ImageSize``
    whose default in fal's real document is 1024×1024.
    """

    model_name = fields.String(
        load_default=REALISTIC_VISION_MODEL,
        validate=validate.Length(min=1),
        metadata={"description": "The Realistic Vision model to use."},
    )
    prompt = common.prompt()
    negative_prompt = common.negative_prompt(REALISTIC_VISION_NEGATIVE_PROMPT)
    image_size = common.image_size({"height": 1024, "width": 1024})
    num_inference_steps = common.num_inference_steps(35, maximum=70)
    guidance_scale = common.guidance_scale(5)
    loras = common.loras(row=common.SdLoraWeightSchema)
    embeddings = common.embeddings()
    expand_prompt = common.expand_prompt()
    num_images = common.num_images()
    seed = common.seed()
    enable_safety_checker = common.enable_safety_checker()
    sync_mode = common.sync_mode()
    format = common.image_format()
    safety_checker_version = common.safety_checker_version()
    request_id = common.request_id()


class FastSdxlInput(FalInput):
    """``fal-ai/fast-sdxl`` (fal's ``FastSdxlInput``)."""

    prompt = common.prompt()
    negative_prompt = common.negative_prompt("")
    image_size = common.image_size("square_hd")
    num_inference_steps = common.num_inference_steps(25, maximum=50)
    guidance_scale = common.guidance_scale(7.5)
    seed = common.seed()
    num_images = common.num_images()
    loras = common.loras(row=common.SdLoraWeightSchema)
    embeddings = common.embeddings()
    enable_safety_checker = common.enable_safety_checker()
    safety_checker_version = common.safety_checker_version()
    expand_prompt = common.expand_prompt()
    format = common.image_format()
    sync_mode = common.sync_mode()
    request_id = common.request_id()


class FastSdxlImageToImageInput(FastSdxlInput):
    """``fal-ai/fast-sdxl/image-to-image``: fast-sdxl plus a starting image and a strength."""

    image_url = common.image_url()
    strength = common.strength(0.95)


class FastLcmDiffusionInput(FalInput):
    """``fal-ai/fast-lcm-diffusion`` (fal's 2025-03 ``FastLcmDiffusionInput``), realtime-capable.

    ``sync_mode`` defaults to true, so images come back as data URIs; LCM needs few steps.
    """

    model_name = fields.String(
        load_default="stabilityai/stable-diffusion-xl-base-1.0",
        validate=validate.OneOf(
            ["stabilityai/stable-diffusion-xl-base-1.0", "runwayml/stable-diffusion-v1-5"]
        ),
        metadata={"description": "The name of the model to use."},
    )
    prompt = common.prompt()
    negative_prompt = common.negative_prompt("")
    image_size = common.image_size("square_hd")
    num_inference_steps = common.num_inference_steps(6, maximum=32)
    guidance_scale = common.guidance_scale(1.5)
    guidance_rescale = StrictFloat(
        load_default=0.0,
        validate=validate.Range(min=0, max=1),
        metadata={
            "description": "The rescale factor for the CFG (0 disables it).",
            "step": 0.05,
        },
    )
    seed = common.seed()
    num_images = common.num_images()
    enable_safety_checker = common.enable_safety_checker()
    safety_checker_version = common.safety_checker_version()
    expand_prompt = common.expand_prompt()
    format = common.image_format()
    sync_mode = common.sync_mode(True)
    request_id = common.request_id()
