"""A text-to-image fal app drawn with Pillow: no model, no GPU, but the whole protocol.

Runs on fal (``fal deploy examples/fal_text_to_image.py::TextToImage``) and unchanged on
falweb's local runtime (``falweb apps add examples/fal_text_to_image.py::TextToImage``).
Swap the drawing for a real pipeline in ``setup`` and ``generate`` to serve your model.
"""

import hashlib
import time

import fal
from fal.exceptions import RequestCancelledException
from fal.toolkit import Image
from pydantic import BaseModel
from pydantic import Field


class Input(BaseModel):
    prompt: str = Field(description="What to draw.", examples=["a red fox at dawn"])
    width: int = Field(256, ge=16, le=2048)
    height: int = Field(256, ge=16, le=2048)
    seed: int | None = Field(None, description="Same prompt and seed, same image.")
    num_inference_steps: int = Field(4, ge=1, le=50)
    step_seconds: float = Field(0.0, ge=0, le=5, description="Simulated time per step.")
    image_url: str | None = Field(None, description="An image to draw over (optional).")


class Output(BaseModel):
    images: list[Image]
    seed: int
    prompt: str


class CancelInput(BaseModel):
    pass


class TextToImage(fal.App, keep_alive=300, max_concurrency=2, name="text-to-image"):
    requirements = ["pillow"]
    machine_type = "GPU-A100"

    def setup(self):
        from PIL import ImageFont

        # Loading weights would go here; it runs once per process, before /health answers.
        self.font = ImageFont.load_default()
        self.cancelled = set()

    @fal.endpoint("/")
    def generate(self, input: Input) -> Output:
        from PIL import Image as PILImage
        from PIL import ImageDraw

        request_id = self.current_request.request_id if self.current_request else None
        seed = input.seed
        if seed is None:
            seed = int(time.time() * 1000) % 2**31
        digest = hashlib.sha256(f"{input.prompt}|{seed}".encode()).digest()
        for step in range(1, input.num_inference_steps + 1):
            if request_id in self.cancelled:
                self.cancelled.discard(request_id)
                raise RequestCancelledException("Request was cancelled")
            time.sleep(input.step_seconds)
            print(f"step {step}/{input.num_inference_steps}")
        image = PILImage.new("RGB", (input.width, input.height), tuple(digest[:3]))
        if input.image_url:
            from fal.toolkit.image import read_image_from_url

            # On falweb the runtime hands its own files over as data: URIs.
            source = read_image_from_url(input.image_url)
            print(f"input image {source.width}x{source.height}")
            image.paste(source.resize((input.width // 2, input.height // 2)), (0, 0))
        draw = ImageDraw.Draw(image)
        draw.text((8, 8), input.prompt[:80], fill=tuple(255 - b for b in digest[:3]),
                  font=self.font)
        return Output(images=[Image.from_pil(image, format="png")], seed=seed,
                      prompt=input.prompt)

    @fal.endpoint("/cancel")
    def cancel(self, input: CancelInput) -> dict:
        # fal (and falweb) send POST <endpoint>/cancel with the running request's id.
        if self.current_request and self.current_request.request_id:
            self.cancelled.add(self.current_request.request_id)
        return {"status": "CANCELLATION_REQUESTED"}
