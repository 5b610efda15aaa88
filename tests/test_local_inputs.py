"""File inputs are checked before they are queued: a file that is not an image, or an image
with more pixels than the runtime decodes, is fal's 422 naming the field at submit, and a
fetched file that fails the same checks fails its job with that 422, never an internal error."""

import base64
import io
import resource
import struct
import zlib

import pytest
import requests
from PIL import Image

from falweb.local import inputs
from falweb.testing import serve_local_runtime
from tests.local_helpers import wait_status

I2I = "fal-ai/fast-sdxl/image-to-image"


def data_uri(data, content_type):
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def png_bytes(size=(64, 64), colour="red"):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width, height):
    """A 1-bit PNG of ``width``×``height`` black pixels, written row by row: a few tens of KB
    on disk, ``width*height`` bytes and more once decoded. Built without decoding it here."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none", then the packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def upload(base, data, content_type, file_name):
    urls = requests.post(f"{base}/rest/storage/upload/initiate",
                         json={"content_type": content_type, "file_name": file_name},
                         timeout=10).json()
    put = requests.put(urls["upload_url"], data=data, headers={"Content-Type": content_type},
                       timeout=10)
    assert put.status_code == 200
    return urls["file_url"]


def assert_field_error(answer, field, *words):
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert [item["loc"] for item in detail] == [["body", field]], detail
    for word in words:
        assert word in detail[0]["msg"], detail
    assert detail[0]["type"]


def queued_count(server):
    return sum(server.runtime.queue.counts().values())


@pytest.mark.parametrize("route", ["queue", "run"])
def test_a_text_data_uri_is_refused_at_submit(local_runtime, route):
    answer = requests.post(f"{local_runtime.url}/{route}/{I2I}",
                           json={"prompt": "x", "image_url": data_uri(b"hello", "text/plain"),
                                 "num_inference_steps": 1, "image_size": "square"},
                           timeout=10)
    assert_field_error(answer, "image_url", "not an image", "text/plain")
    assert queued_count(local_runtime) == 0


def test_an_uploaded_text_file_is_refused_at_submit(local_runtime):
    url = upload(local_runtime.url, b"just some words\n", "text/plain", "notes.txt")
    answer = requests.post(f"{local_runtime.url}/queue/{I2I}",
                           json={"prompt": "x", "image_url": url}, timeout=10)
    assert_field_error(answer, "image_url", "not an image", "text/plain")
    assert queued_count(local_runtime) == 0
    # the same bytes under an image's name and type are still not an image
    disguised = upload(local_runtime.url, b"just some words\n", "image/png", "notes.png")
    answer = requests.post(f"{local_runtime.url}/queue/{I2I}",
                           json={"prompt": "x", "image_url": disguised}, timeout=10)
    assert_field_error(answer, "image_url", "not an image")


def test_only_common_image_formats_are_parsed(local_runtime):
    # Pillow knows EPS (decoded by running Ghostscript) and dozens of rarer formats; an
    # input image is one of the formats people send, or it is refused before any parser
    # beyond the header sniffing sees it.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\nshowpage\n"
    assert Image.open(io.BytesIO(eps)).format == "EPS"
    answer = requests.post(f"{local_runtime.url}/queue/{I2I}",
                           json={"prompt": "x", "image_url": data_uri(eps, "image/x-eps")},
                           timeout=10)
    assert_field_error(answer, "image_url", "not an image", "image/x-eps", "PNG, JPEG")
    for fmt in ("JPEG", "WEBP", "GIF"):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), "green").save(buffer, fmt)
        answer = requests.post(f"{local_runtime.url}/run/{I2I}",
                               json={"prompt": "x", "num_inference_steps": 1,
                                     "image_size": "square",
                                     "image_url": data_uri(buffer.getvalue(), "image/x")},
                               timeout=30)
        assert answer.status_code == 200, (fmt, answer.text)


def test_an_uploaded_image_is_still_accepted(local_runtime):
    url = upload(local_runtime.url, png_bytes(), "image/png", "in.png")
    body = requests.post(f"{local_runtime.url}/queue/{I2I}",
                         json={"prompt": "x", "image_url": url, "num_inference_steps": 1,
                               "image_size": "square"}, timeout=10).json()
    final = wait_status(body["status_url"])
    assert "error" not in final


def test_a_fetched_file_that_is_not_an_image_fails_as_a_validation_error(local_runtime,
                                                                         monkeypatch):
    # Fetching needs a public host, which tests never reach: the fetch answers here.
    monkeypatch.setattr(inputs, "fetch_public", lambda url, limit: (b"<html>", "text/html"))
    body = requests.post(f"{local_runtime.url}/queue/{I2I}",
                         json={"prompt": "x", "image_url": "https://example.com/page",
                               "num_inference_steps": 1, "image_size": "square"},
                         timeout=10).json()
    final = wait_status(body["status_url"])
    assert final["error_type"] == "validation_error"
    assert "image_url" in final["error"]
    result = requests.get(body["response_url"], timeout=10)
    assert_field_error(result, "image_url", "not an image", "text/html")


def test_an_image_that_cannot_be_decoded_fails_as_a_validation_error(local_runtime):
    # A PNG whose header is fine but whose pixels are cut off: it opens, it does not decode.
    truncated = png_bytes((256, 256), "blue")
    truncated = truncated[: len(truncated) // 2]
    body = requests.post(f"{local_runtime.url}/queue/{I2I}",
                         json={"prompt": "x", "image_url": data_uri(truncated, "image/png"),
                               "num_inference_steps": 1, "image_size": "square"},
                         timeout=10)
    assert body.status_code == 200, body.text
    final = wait_status(body.json()["status_url"])
    assert final["error_type"] == "validation_error"
    result = requests.get(body.json()["response_url"], timeout=10)
    assert_field_error(result, "image_url", "could not be decoded")


def _peak_rss():
    """Peak resident memory of this process in bytes: since the last reset where Linux
    allows one (``/proc/self/clear_refs``), else since the process started."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def test_a_decompression_bomb_is_refused_from_its_header(local_runtime):
    bomb = bomb_png(13000, 13000)
    assert len(bomb) < 1024 * 1024  # a small file...
    _reset_peak_rss()
    before = _peak_rss()
    answer = requests.post(f"{local_runtime.url}/queue/{I2I}",
                           json={"prompt": "x", "image_url": data_uri(bomb, "image/png"),
                                 "num_images": 8, "image_size": "square"}, timeout=30)
    # ...of 169 million pixels, refused without decoding them (the runtime runs in this
    # process: decoding would have taken hundreds of MB here).
    assert_field_error(answer, "image_url", "larger than the 16777216 pixels allowed")
    assert _peak_rss() - before < 200 * 1024 * 1024
    assert queued_count(local_runtime) == 0
    url = upload(local_runtime.url, bomb, "image/png", "bomb.png")
    answer = requests.post(f"{local_runtime.url}/run/{I2I}",
                           json={"prompt": "x", "image_url": url}, timeout=30)
    assert_field_error(answer, "image_url", "larger than the 16777216 pixels allowed")


def test_the_pixel_limits_are_settings(local_config, monkeypatch):
    # The runtime sets Pillow's process-wide limit to its own: put it back afterwards.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    config = local_config | {"FALWEB_LOCAL_MAX_INPUT_PIXELS": 100 * 100,
                             "FALWEB_LOCAL_MAX_OUTPUT_PIXELS": 512 * 512 * 2}
    with serve_local_runtime(config) as server:
        big = requests.post(f"{server.url}/run/{I2I}",
                            json={"prompt": "x", "image_size": "square",
                                  "image_url": data_uri(png_bytes((101, 100)), "image/png")},
                            timeout=10)
        assert_field_error(big, "image_url", "larger than the 10000 pixels allowed")
        # exactly at the limit is fine
        fits = requests.post(f"{server.url}/run/{I2I}",
                             json={"prompt": "x", "image_url": data_uri(png_bytes((100, 100)),
                                                                        "image/png"),
                                   "num_inference_steps": 1, "image_size": "square"},
                             timeout=30)
        assert fits.status_code == 200, fits.text
        many = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                             json={"prompt": "x", "image_size": "square", "num_images": 3},
                             timeout=10)
        assert_field_error(many, "num_images", "524288")
        one = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                            json={"prompt": "x", "image_size": "square_hd"}, timeout=10)
        assert_field_error(one, "image_size", "1024x1024")
        assert queued_count(server) == 0
