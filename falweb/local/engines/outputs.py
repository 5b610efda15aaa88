"""What every engine does with its images: encode, store or inline, and shape fal's output."""

import base64
import functools
import io
import secrets

from falweb.schemas import resolve_image_size


def common_inputs(input, endpoint):
    """(prompt, (width, height), steps, count, seed, format) as every image endpoint has them.

    A missing seed is drawn from 64 bits, as fal's are; the output reports it.
    """
    seed = input.get("seed")
    if seed is None:
        seed = secrets.randbits(64)
    return (
        input.get("prompt") or "",
        resolve_image_size(input.get("image_size") or "square"),
        int(input.get("num_inference_steps") or 1),
        int(input.get("num_images") or 1),
        seed,
        input.get(endpoint.format_field) or "jpeg",
    )


def encode(image, fmt):
    """(bytes, content type) of a PIL image as PNG or JPEG."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", optimize=False)
        return buffer.getvalue(), "image/png"
    image.convert("RGB").save(buffer, "JPEG", quality=88)
    return buffer.getvalue(), "image/jpeg"


def image_output(ctx, image, fmt, stem, sync_mode):
    """fal's ``Image`` for one picture: a data URI with ``sync_mode``, else a stored file."""
    data, content_type = encode(image, fmt)
    name = f"{stem}.{'png' if fmt == 'png' else 'jpeg'}"
    if sync_mode:
        url = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
    else:
        url = ctx.save(data, content_type, name)
    return {"url": url, "width": image.width, "height": image.height,
            "content_type": content_type, "file_name": name, "file_size": len(data)}


def fal_output(endpoint, *, images, inference, seed, nsfw, prompt):
    """The common output, keeping only the keys the endpoint's output schema declares
    (``fal-ai/lora`` has no ``timings`` or ``prompt``)."""
    output = {
        "images": images,
        "timings": {"inference": inference},
        "seed": seed,
        "has_nsfw_concepts": list(nsfw),
        "prompt": prompt,
    }
    declared = _declared(endpoint.output_schema)
    return {key: value for key, value in output.items() if key in declared}


@functools.cache
def _declared(schema_class):
    # Once per schema class: an instance's fields are built on every construction.
    return frozenset(schema_class().fields)
