"""FLUX family inputs: ``fal-ai/flux/dev``."""

from marshmallow import fields
from marshmallow import validate

from falweb.schemas import common
from falweb.schemas.common import FalInput


class FluxDevInput(FalInput):
    """``fal-ai/flux/dev`` (fal's ``FluxDevInput``).

    No ``negative_prompt``; the format field is ``output_format``. Ranges (steps 1–50,
    guidance 1–20, images 1–4) are the published third-party ones.
    """

    prompt = common.prompt()
    image_size = common.image_size("landscape_4_3")
    num_inference_steps = common.num_inference_steps(28, maximum=50)
    guidance_scale = common.guidance_scale(3.5, minimum=1)
    seed = common.seed()
    num_images = common.num_images(maximum=4)
    enable_safety_checker = common.enable_safety_checker()
    output_format = common.image_format()
    acceleration = fields.String(
        load_default="none",
        validate=validate.OneOf(["none", "regular", "high"]),
        metadata={"description": "The speed of the generation. The higher, the faster."},
    )
    sync_mode = common.sync_mode()
