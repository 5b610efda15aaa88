"""``fal-ai/lora`` ("Stable Diffusion with LoRAs", the seed's ``110602490-lora``).

Only the main fields are modelled; ControlNet, IP-Adapter, IC-Light, tiling and debug
options are not (an API caller sending them is told they are unknown).
"""

from marshmallow import fields
from marshmallow import validate

from falweb.schemas import common
from falweb.schemas.common import FalInput
from falweb.schemas.fields import StrictBoolean
from falweb.schemas.fields import StrictInteger

SCHEDULERS = (
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "Euler",
    "Euler A",
    "Euler (trailing timesteps)",
    "LCM",
    "LCM (trailing timesteps)",
    "DDIM",
    "TCD",
)


class LoraInput(FalInput):
    """fal's ``loraInput``, main fields. ``model_name`` is required, as on fal."""

    model_name = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "URL or HuggingFace ID of the base model to generate the image.",
            "title": "Base model",
            "example": "stabilityai/stable-diffusion-xl-base-1.0",
            "advanced": False,
        },
    )
    unet_name = fields.String(
        metadata={"description": "URL or HuggingFace ID of a custom U-Net to use."}
    )
    variant = fields.String(
        metadata={"description": "The variant of the model to use for huggingface models."}
    )
    prompt = common.prompt()
    negative_prompt = common.negative_prompt("")
    prompt_weighting = StrictBoolean(
        load_default=False,
        metadata={
            "description": (
                "If set to true, the prompt weighting syntax will be used and the 77-token "
                "limit is lifted."
            )
        },
    )
    loras = common.loras()
    # fal supports a single embedding on this endpoint.
    embeddings = common.embeddings(max_rows=1)
    seed = common.seed()
    image_size = common.image_size("square_hd", multiple_of=8)
    num_inference_steps = common.num_inference_steps(30)
    guidance_scale = common.guidance_scale(7.5)
    clip_skip = StrictInteger(
        load_default=0,
        validate=validate.Range(min=0, max=2),
        metadata={"description": "Skip part of the text encoder (0 = none)."},
    )
    scheduler = fields.String(
        validate=validate.OneOf(SCHEDULERS),
        metadata={"description": "Scheduler / sampler to use for the image denoising process."},
    )
    prediction_type = fields.String(
        load_default="epsilon",
        validate=validate.OneOf(["v_prediction", "epsilon"]),
        metadata={"description": "The type of prediction to use for the image generation."},
    )
    rescale_betas_snr_zero = StrictBoolean(
        load_default=False,
        metadata={"description": "Whether to set the rescale_betas_snr_zero option."},
    )
    image_format = common.image_format("png")
    num_images = common.num_images()
    enable_safety_checker = common.enable_safety_checker(False)
