"""Reading file inputs in a native app, as fal's toolkit reads them in a fal app.

The runtime hands its own files to an app as ``data:`` URIs; other URLs are fetched from
public addresses only (as fal's SSRF guard does), within a size limit.
"""

import io

from falweb.local.inputs import InputFileError
from falweb.local.inputs import decode_data_uri
from falweb.local.inputs import fetch_public

MAX_IMAGE_DOWNLOAD_SIZE = 50 * 1024 * 1024


class InputError(ValueError):
    """A file input that cannot be read; the message says why."""


def read_file_from_url(url, max_size=MAX_IMAGE_DOWNLOAD_SIZE):
    """(bytes, content type) of ``url`` (``data:`` or a public http(s) URL)."""
    try:
        if url.startswith("data:"):
            return decode_data_uri(url, max_size)
        return fetch_public(url, max_size)
    except InputFileError as exc:
        raise InputError(f"Could not load file from url: {exc}") from None


def read_image_from_url(url, convert_to_rgb=True, max_size=MAX_IMAGE_DOWNLOAD_SIZE):
    """The PIL image at ``url``, loaded (RGB unless ``convert_to_rgb`` is False)."""
    from PIL import Image

    data, _ = read_file_from_url(url, max_size)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError) as exc:
        raise InputError(f"Could not load image from url: {exc}") from None
    return image.convert("RGB") if convert_to_rgb else image
