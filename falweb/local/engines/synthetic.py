"""Synthetic outputs for an endpoint known only by its OpenAPI document.

The output schema is walked and a value made for it: images of the requested size (the
preview engine's pictures), a short MP4 where the output has a video ``File``, a WAV where it
has an audio ``File``, text where it has text, the input's seed, numbers and flags from the
schema's defaults. Required properties are always there; optional ones only when they are
what a caller reads (the media, ``seed``, ``timings``, ``prompt``, the text) or have a default,
so that an optional debug file is absent as on fal. Everything is labelled synthetic.
"""

import hashlib
import secrets
import time

from falweb.local.engines.media import VIDEO_SIZES
from falweb.local.engines.media import audio_wav
from falweb.local.engines.media import seconds_of
from falweb.local.engines.media import video_mp4
from falweb.local.engines.outputs import image_output

TEXT_NAMES = frozenset({"output", "text", "response", "answer", "content", "caption",
                        "transcript", "transcription", "description", "result"})
READ_OPTIONAL = frozenset({"images", "image", "video", "audio", "audio_file", "seed",
                           "timings", "prompt", "has_nsfw_concepts", "usage"}) | TEXT_NAMES
LABEL = "SYNTHETIC PREVIEW"
MAX_DEPTH = 8


class Synthesizer:
    """One run: the endpoint's document, the validated input and the engine context."""

    def __init__(self, endpoint, input, ctx, render, seed):
        from falweb.openapi.documents import input_and_output
        from falweb.schemas.from_json_schema import Builder

        self.endpoint = endpoint
        self.input = input
        self.ctx = ctx
        self.render = render
        self.seed = seed
        self.builder = Builder(endpoint.document, for_output=True)
        self.output_node = input_and_output(endpoint.document)[1]
        self.prompt = str(input.get("prompt") or input.get("text") or input.get("style") or "")
        self.started = time.perf_counter()
        self._init_image = None
        self._init_loaded = False

    # -- what to make -------------------------------------------------------------------------

    def output(self):
        value = self.value(self.output_node, "output", 0)
        return value if isinstance(value, dict) else {"output": value}

    def value(self, raw, name, depth):
        node = self.builder.resolve(raw)
        members = node.get("anyOf") or node.get("oneOf")
        if isinstance(members, list):
            kept = [m for m in members if self.builder.resolve(m).get("type") != "null"]
            if not kept:
                return None
            node = {**self.builder.resolve(kept[0]),
                    **{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}}
        if depth > MAX_DEPTH:
            return node.get("default")
        kind = node.get("type") or ("object" if "properties" in node else None)
        if name == "timings" and kind == "object":
            return {"inference": time.perf_counter() - self.started}
        media = self.media_kind(node, name)
        if media:
            return self.file(media, name)
        if kind == "object":
            return self.object(node, depth)
        if kind == "array":
            return self.array(node, name, depth)
        return self.scalar(node, name, kind)

    def object(self, node, depth):
        properties = node.get("properties") or {}
        if not properties:
            return dict(node.get("default") or {})
        required = set(node.get("required") or [])
        made = {}
        for name, raw in properties.items():
            wanted = name in required or name in READ_OPTIONAL
            resolved = self.builder.resolve(raw)
            if not wanted and "default" not in resolved:
                continue
            if not wanted:
                made[name] = resolved["default"]
                continue
            made[name] = self.value(raw, name, depth + 1)
        return made

    def array(self, node, name, depth):
        items = node.get("items") or {}
        if name == "has_nsfw_concepts":
            return [False] * self.count()
        media = self.media_kind(self.builder.resolve(items), name)
        if media == "image":
            return [self.file("image", name, index) for index in range(self.count())]
        if media:
            return [self.file(media, name)]
        if node.get("default") is not None:
            return list(node["default"])
        return []

    def scalar(self, node, name, kind):
        if name == "seed" and kind in ("integer", None):
            return self.seed
        if name == "prompt" and kind == "string":
            return self.prompt
        if "enum" in node and node["enum"]:
            return node.get("default", node["enum"][0])
        if kind == "string":
            if name in TEXT_NAMES:
                return self.text()
            return node.get("default", "")
        if "default" in node:
            return node["default"]
        if kind == "integer":
            return int(node.get("minimum") or 0)
        if kind == "number":
            return float(node.get("minimum") or 0)
        if kind == "boolean":
            return False
        return None

    def count(self):
        return int(self.input.get("num_images") or 1)

    # -- media ------------------------------------------------------------------------------

    def media_kind(self, node, name):
        """"image" / "video" / "audio" / "file" for a fal File-like object, else None."""
        properties = node.get("properties") or {}
        if "url" not in properties or node.get("type", "object") != "object":
            return None
        title = str(node.get("title") or "").lower()
        words = f"{name} {title}"
        if "video" in words:
            return "video"
        if "audio" in words:
            return "audio"
        if "image" in words or {"width", "height"} <= set(properties):
            return "image"
        return "file"

    def size(self):
        from falweb.schemas import resolve_image_size

        size = self.input.get("image_size")
        if size:
            return resolve_image_size(size)
        image = self.init_image()
        if image is not None:
            return image.size
        return resolve_image_size("square")

    def init_image(self):
        if not self._init_loaded:
            self._init_loaded = True
            for field in self.endpoint.file_fields:
                if "image" in field:
                    self._init_image = self.ctx.image(field)
                    if self._init_image is not None:
                        break
        return self._init_image

    def file(self, media, name, index=0):
        if media == "image":
            width, height = self.size()
            picture = self.render(self.prompt, self.seed, width, height, index,
                                  self.init_image(), 0.6 if self.init_image() else 1.0)
            fmt = next((self.input[f] for f in ("output_format", "image_format", "format")
                        if self.input.get(f) in ("png", "jpeg")), "png")
            return image_output(self.ctx, picture, fmt, f"preview-{index}",
                                self.input.get("sync_mode"))
        if media == "video":
            width, height = VIDEO_SIZES.get(str(self.input.get("aspect_ratio")), (320, 180))
            first = self.render(self.prompt, self.seed, width, height, 0)
            data, width, height, _ = video_mp4(first, seconds_of(self.input), LABEL)
            url = self.ctx.save(data, "video/mp4", "preview.mp4")
            return {"url": url, "content_type": "video/mp4", "file_name": "preview.mp4",
                    "file_size": len(data)}
        if media == "audio":
            data = audio_wav(seconds_of(self.input, 3.0), self.seed)
            url = self.ctx.save(data, "audio/wav", "preview.wav")
            return {"url": url, "content_type": "audio/wav", "file_name": "preview.wav",
                    "file_size": len(data)}
        data = f"{LABEL}: {self.prompt}\n".encode()
        url = self.ctx.save(data, "text/plain", "preview.txt")
        return {"url": url, "content_type": "text/plain", "file_name": "preview.txt",
                "file_size": len(data)}

    def text(self):
        digest = hashlib.sha256(f"{self.prompt}\x1f{self.seed}".encode()).hexdigest()[:8]
        return (f"[{LABEL} · falweb local] A made-up answer ({digest}) to: "
                f"{self.prompt[:500]}")


def run(endpoint, input, ctx, render, step_delay=0.0):
    """fal-shaped output for a documented endpoint (see the module docstring)."""
    seed = input.get("seed")
    if seed is None:
        seed = secrets.randbits(32)
    steps = int(input.get("num_inference_steps") or 4)
    ctx.log(f"Preview engine: synthetic output for {endpoint.endpoint_id} from its "
            f"OpenAPI document ({steps} steps)")
    for step in range(1, steps + 1):
        if step_delay:
            time.sleep(step_delay)
        ctx.progress(step, steps)
    return Synthesizer(endpoint, input, ctx, render, seed).output()

