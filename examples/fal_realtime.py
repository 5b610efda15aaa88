"""A fal app with a realtime endpoint: msgpack frames in, a small PNG out per frame.

fal's clients connect with ``realtime.connect("<owner>/<app>", on_result=...)`` and send
``{"prompt": ..., "seed": ...}``; each answer carries the PNG's bytes (no upload, as realtime
apps answer in the frame). Served unchanged by falweb's runtime, frames passed through.
"""

import hashlib
import io

import fal
from pydantic import BaseModel
from pydantic import Field


class SketchInput(BaseModel):
    prompt: str
    seed: int = 0
    size: int = Field(64, ge=8, le=512)


class SketchOutput(BaseModel):
    image: bytes
    prompt: str
    seed: int


class RealtimeSketch(fal.App, keep_alive=300, name="realtime-sketch"):
    def setup(self):
        from PIL import Image

        self.Image = Image

    @fal.realtime("/realtime")
    def sketch(self, input: SketchInput) -> SketchOutput:
        digest = hashlib.sha256(f"{input.prompt}|{input.seed}".encode()).digest()
        image = self.Image.new("RGB", (input.size, input.size), tuple(digest[:3]))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return SketchOutput(image=buffer.getvalue(), prompt=input.prompt, seed=input.seed)
