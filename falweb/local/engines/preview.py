"""The preview engine: deterministic synthetic images drawn with Pillow.

Same (prompt, seed, size, index, input image) → the same bytes, so tests and users can
reproduce a result. It honours the size, ``num_images``, the format field, ``seed``,
``sync_mode`` (data URIs) and the step count (one log line and one progress event a step,
``step_delay`` seconds each). Every image carries a "SYNTHETIC PREVIEW" label: these are not
model outputs. A prompt containing "nsfw" is flagged in ``has_nsfw_concepts`` so that
interfaces can exercise their NSFW handling offline.
"""

import colorsys
import functools
import hashlib
import random
import textwrap
import time

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
from PIL import ImageOps

from falweb.local.engines.outputs import common_inputs
from falweb.local.engines.outputs import fal_output
from falweb.local.engines.outputs import image_output

LABEL = "SYNTHETIC PREVIEW · falweb local"


def _rng(*parts):
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _colour(rng):
    hue, saturation, value = rng.random(), 0.45 + 0.4 * rng.random(), 0.55 + 0.4 * rng.random()
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)


def render(prompt, seed, width, height, index=0, init_image=None, strength=1.0):
    """One synthetic RGB image for these inputs (deterministic)."""
    rng = _rng(prompt, seed, width, height, index)
    gradient = _gradient(min(256, max(width, height))).rotate(rng.uniform(0, 360))
    if gradient.size != (width, height):
        gradient = gradient.resize((width, height))
    # The gradient as a mask between two colours: colorize's blend, without building its
    # lookup tables in Python for every image.
    dark, light = _colour(rng), _colour(rng)
    image = Image.composite(Image.new("RGB", (width, height), light),
                            Image.new("RGB", (width, height), dark), gradient)
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    unit = min(width, height)
    for _ in range(6 + rng.randrange(6)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.3) * unit
        fill = (*_colour(rng), rng.randrange(60, 170))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.rectangle((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=fill)
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    if init_image is not None:
        source = ImageOps.fit(init_image.convert("RGB"), (width, height))
        # strength 0 keeps the input, 1 replaces it, as in image-to-image diffusion.
        image = Image.blend(source, image, max(0.0, min(1.0, float(strength))))
    _caption(image, prompt, unit)
    return image


@functools.lru_cache(maxsize=8)
def _gradient(side):
    # Small images rotate a gradient of their own size: rotating the 256-pixel one and
    # scaling it down was half of a small preview's cost.
    gradient = Image.linear_gradient("L")
    return gradient if side == 256 else gradient.resize((side, side))


@functools.lru_cache(maxsize=32)
def _font(size):
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=32)
def _label(width, size):
    # The label is the same on every image of a width: drawn once (text is most of the cost
    # of a small image), then pasted with its own alpha as the mask.
    line_height = size + 4
    layer = Image.new("RGBA", (width, line_height), (255, 255, 255, 0))
    ImageDraw.Draw(layer).text((size // 2, 0), LABEL, fill=(255, 255, 255, 235),
                               font=_font(size))
    return layer


def _caption(image, prompt, unit):
    draw = ImageDraw.Draw(image, "RGBA")
    size = max(10, unit // 28)
    font = _font(size)
    width, height = image.size
    lines = textwrap.wrap(prompt, max(16, int(width / (size * 0.55))))[:3]
    pad = size // 2
    box_height = pad * 2 + (len(lines) + 1) * (size + 4)
    top = height - box_height + pad
    draw.rectangle((0, height - box_height, width, height), fill=(0, 0, 0, 150))
    label = _label(width, size)
    image.paste(label, (0, top), label)
    for i, line in enumerate(lines, start=1):
        draw.text((pad, top + i * (size + 4)), line, fill=(255, 255, 255, 235), font=font)


class PreviewEngine:
    name = "preview"
    synthetic = True

    def __init__(self, step_delay=0.0):
        self.step_delay = float(step_delay)

    def run(self, input, ctx):
        endpoint = ctx.endpoint
        if endpoint.document is not None:
            # Known only by its OpenAPI document: outputs shaped by that document.
            from falweb.local.engines import synthetic

            return synthetic.run(endpoint, input, ctx, render, self.step_delay)
        prompt, (width, height), steps, count, seed, fmt = common_inputs(input, endpoint)
        init = ctx.image("image_url")
        if init is not None:
            # Fitted once, not once per image; the full-size decoded input is let go.
            init = ImageOps.fit(init.convert("RGB"), (width, height))
        ctx.log(f"Preview engine: synthetic images for {endpoint.endpoint_id} "
                f"({width}x{height}, {count} image(s), {steps} steps)")
        started = time.perf_counter()
        for step in range(1, steps + 1):
            if self.step_delay:
                time.sleep(self.step_delay)
            ctx.progress(step, steps)
        images = [
            image_output(ctx, render(prompt, seed, width, height, index, init,
                                     input.get("strength", 1.0)),
                         fmt, f"preview-{index}", input.get("sync_mode"))
            for index in range(count)
        ]
        nsfw = "nsfw" in prompt.lower()
        return fal_output(endpoint, images=images, inference=time.perf_counter() - started,
                          seed=seed, nsfw=[nsfw] * count, prompt=prompt)
