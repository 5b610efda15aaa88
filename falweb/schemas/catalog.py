"""The endpoint catalog: which fal endpoints falweb knows, with their schemas."""

import logging
from collections import OrderedDict

from falweb.schemas.documented import with_documented_fields
from falweb.schemas.endpoint import Endpoint
from falweb.schemas.flux import FluxDevInput
from falweb.schemas.lora import LoraInput
from falweb.schemas.outputs import LoraOutputSchema
from falweb.schemas.outputs import TextToImageOutputSchema
from falweb.schemas.stable_diffusion import FastLcmDiffusionInput
from falweb.schemas.stable_diffusion import FastSdxlImageToImageInput
from falweb.schemas.stable_diffusion import FastSdxlInput
from falweb.schemas.stable_diffusion import RealisticVisionInput


def _catalog(*endpoints):
    return OrderedDict((endpoint.endpoint_id, endpoint) for endpoint in endpoints)


CATALOG = _catalog(
    Endpoint(
        endpoint_id="fal-ai/realistic-vision",
        title="Realistic Vision",
        description="Photorealistic images with the Realistic Vision Stable Diffusion model.",
        input_schema=with_documented_fields(RealisticVisionInput, "fal-ai/realistic-vision"),
        output_schema=TextToImageOutputSchema,
        tags=("stable-diffusion", "photorealistic"),
    ),
    Endpoint(
        endpoint_id="fal-ai/fast-sdxl",
        title="Fast SDXL",
        description="Stable Diffusion XL, fast, with LoRAs and embeddings.",
        input_schema=FastSdxlInput,
        output_schema=TextToImageOutputSchema,
        tags=("stable-diffusion", "sdxl"),
    ),
    Endpoint(
        endpoint_id="fal-ai/fast-sdxl/image-to-image",
        title="Fast SDXL image-to-image",
        description="Stable Diffusion XL starting from an input image.",
        input_schema=FastSdxlImageToImageInput,
        output_schema=TextToImageOutputSchema,
        file_fields=("image_url",),
        category="image-to-image",
        tags=("stable-diffusion", "sdxl"),
    ),
    Endpoint(
        endpoint_id="fal-ai/flux/dev",
        title="FLUX.1 [dev]",
        description="FLUX.1 [dev], a 12B parameter flow transformer for text-to-image.",
        input_schema=FluxDevInput,
        output_schema=TextToImageOutputSchema,
        format_field="output_format",
        tags=("flux",),
    ),
    Endpoint(
        endpoint_id="fal-ai/lora",
        title="Stable Diffusion with LoRAs",
        description="Any Stable Diffusion base model with any LoRA weights.",
        input_schema=with_documented_fields(LoraInput, "fal-ai/lora"),
        output_schema=LoraOutputSchema,
        # The seed's Next.js example calls "110602490-lora"; fal's clients turn that into
        # "110602490/lora".
        aliases=("110602490/lora", "110602490-lora"),
        format_field="image_format",
        tags=("stable-diffusion", "lora"),
    ),
    Endpoint(
        endpoint_id="fal-ai/fast-lcm-diffusion",
        title="Fast LCM diffusion",
        description="Latent Consistency Model diffusion in a few steps, also in real time.",
        input_schema=FastLcmDiffusionInput,
        output_schema=TextToImageOutputSchema,
        realtime=True,
        tags=("stable-diffusion", "lcm", "realtime"),
    ),
)

_BY_ID = {
    name: endpoint
    for endpoint in CATALOG.values()
    for name in (endpoint.endpoint_id, *endpoint.aliases)
}


log = logging.getLogger("falweb.schemas")


def get_endpoint(endpoint_id):
    """Return the :class:`Endpoint` for a canonical id or alias, or ``None``.

    The hand-written endpoints above come first; any other id is looked up in the endpoint
    documents (:mod:`falweb.openapi`: shipped, ``instance/openapi/``, registered sources,
    and with the fal backend fal's published documents) and its schemas are generated.
    Leading and trailing slashes are ignored (``/fal-ai/fast-sdxl/`` works).
    """
    if not isinstance(endpoint_id, str):
        return None
    endpoint_id = endpoint_id.strip("/")
    found = _BY_ID.get(endpoint_id)
    if found is not None:
        return found
    return documented_endpoint(endpoint_id)


def documented_endpoint(endpoint_id):
    """The endpoint built from ``endpoint_id``'s document, or ``None`` (no document, or one
    that describes no usable endpoint: logged, never raised)."""
    # Imported here: falweb.openapi's modules load falweb.schemas, which loads this module.
    from falweb.openapi import find_document
    from falweb.openapi.endpoints import CACHE
    from falweb.schemas.from_json_schema import SchemaError

    document, source = find_document(endpoint_id)
    if document is None:
        return None
    try:
        return CACHE.get(endpoint_id, document, source)
    except (ValueError, SchemaError) as exc:
        log.warning("the document for %s describes no usable endpoint: %s", endpoint_id, exc)
        return None
