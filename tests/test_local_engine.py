"""The preview engine: deterministic, honours its inputs, uses input images."""

import base64
import io

import requests
from PIL import Image

from falweb.local.engines.outputs import encode
from falweb.local.engines.preview import render


def run(base, endpoint_id, input):
    answer = requests.post(f"{base}/run/{endpoint_id}", json=input, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-fal-request-id"]
    return answer.json()


def image_bytes(url):
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    return requests.get(url, timeout=10).content


def test_same_inputs_give_the_same_bytes(local_runtime):
    input = {"prompt": "a red fox", "seed": 1234, "num_inference_steps": 2,
             "image_size": "square"}
    first = run(local_runtime.url, "fal-ai/fast-sdxl", input)
    second = run(local_runtime.url, "fal-ai/fast-sdxl", input)
    assert first["images"][0]["url"] != second["images"][0]["url"]  # two stored files
    assert image_bytes(first["images"][0]["url"]) == image_bytes(second["images"][0]["url"])
    other = run(local_runtime.url, "fal-ai/fast-sdxl", input | {"seed": 1235})
    assert image_bytes(other["images"][0]["url"]) != image_bytes(first["images"][0]["url"])


def test_sizes_counts_formats_and_sync_mode(local_runtime):
    result = run(local_runtime.url, "fal-ai/flux/dev",
                 {"prompt": "x", "image_size": "portrait_16_9", "num_images": 3,
                  "output_format": "png", "sync_mode": True, "num_inference_steps": 1})
    assert len(result["images"]) == 3
    for image in result["images"]:
        assert image["url"].startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(image_bytes(image["url"])))
        assert (picture.format, picture.size) == ("PNG", (576, 1024))
    assert isinstance(result["seed"], int)
    lora = run(local_runtime.url, "fal-ai/lora",
               {"prompt": "x", "model_name": "m", "num_inference_steps": 1,
                "image_size": {"width": 128, "height": 64}})
    assert lora["images"][0]["content_type"] == "image/png"  # fal-ai/lora defaults to png
    assert (lora["images"][0]["width"], lora["images"][0]["height"]) == (128, 64)


def test_image_to_image_uses_the_input_image(local_runtime):
    def data_uri(colour):
        buffer = io.BytesIO()
        Image.new("RGB", (256, 256), colour).save(buffer, "PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    base = {"prompt": "same", "seed": 7, "num_inference_steps": 1, "image_size": "square",
            "strength": 0.3, "format": "png"}
    red = run(local_runtime.url, "fal-ai/fast-sdxl/image-to-image",
              base | {"image_url": data_uri("red")})
    blue = run(local_runtime.url, "fal-ai/fast-sdxl/image-to-image",
               base | {"image_url": data_uri("blue")})
    red_image = Image.open(io.BytesIO(image_bytes(red["images"][0]["url"]))).convert("RGB")
    blue_image = Image.open(io.BytesIO(image_bytes(blue["images"][0]["url"]))).convert("RGB")
    r, _, b = red_image.getpixel((10, 10))
    assert r > b  # strength 0.3 keeps most of the red input
    r, _, b = blue_image.getpixel((10, 10))
    assert b > r


def test_image_to_image_refuses_private_urls_and_bad_data(local_runtime):
    answer = requests.post(f"{local_runtime.url}/run/fal-ai/fast-sdxl/image-to-image",
                           json={"prompt": "x", "image_url": "data:image/png;base64,@@@"},
                           timeout=10)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "image_url"]
    # a loopback URL (here: the runtime itself) is never fetched
    answer = requests.post(f"{local_runtime.url}/run/fal-ai/fast-sdxl/image-to-image",
                           json={"prompt": "x", "image_url": f"{local_runtime.url}/healthz"},
                           timeout=10)
    assert answer.status_code == 422
    assert "private or local" in answer.json()["detail"][0]["msg"]


def test_render_is_pure():
    one = encode(render("p", 1, 64, 48), "jpeg")
    two = encode(render("p", 1, 64, 48), "jpeg")
    assert one == two and one[1] == "image/jpeg"


def test_stream_sends_progress_then_the_output(local_runtime):
    from tests.local_helpers import sse_events

    answer = requests.post(f"{local_runtime.url}/run/fal-ai/fast-sdxl/stream",
                           json={"prompt": "x", "num_inference_steps": 3, "image_size": "square"},
                           stream=True, timeout=30)
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-fal-request-id"]
    events = sse_events(answer)
    steps = [e["step"] for e in events if "step" in e]
    assert steps == [1, 2, 3]
    assert "images" in events[-1] and "partial" not in events[-1]
