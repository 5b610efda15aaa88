"""Files as data URIs, and PIL images as bytes: the helpers of fal's Python client
(``encode``, ``encode_file``, ``encode_image``), which never touch the network.

Pillow is imported only when an image is encoded, so the client needs it only then.
"""

import base64
import io
import mimetypes
import pathlib

IMAGE_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png",
               "webp": "image/webp", "gif": "image/gif"}


def encode(data, content_type):
    """``data:<content_type>;base64,<...>`` for ``data`` (bytes, or str as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return f"data:{content_type};base64,{base64.b64encode(bytes(data)).decode('ascii')}"


def encode_file(path):
    """The file at ``path`` as a data URI, its type guessed from its name (else
    ``application/octet-stream``). Raises ``FileNotFoundError``."""
    path = pathlib.Path(path)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return encode(path.read_bytes(), content_type)


def is_image(value):
    """True for a PIL image (checked without importing Pillow)."""
    return any(cls.__module__.startswith("PIL.") and cls.__name__ == "Image"
               for cls in type(value).__mro__)


def image_bytes(image, format="png"):
    """``(bytes, content_type, file_name)`` of a PIL image encoded as ``format``. Raises
    ``ValueError`` naming ``format`` when it is not an image format fal serves."""
    kind = str(format).lower()
    if kind not in IMAGE_TYPES:
        raise ValueError(f"format must be one of {sorted(IMAGE_TYPES)}, not {format!r}")
    if kind in ("jpeg", "jpg") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")  # JPEG has no alpha channel
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if kind == "jpg" else kind.upper())
    ext = "jpg" if kind == "jpeg" else kind
    return buffer.getvalue(), IMAGE_TYPES[kind], f"image.{ext}"


def encode_image(image, format="jpeg"):
    """A PIL image as a data URI (``format``: ``jpeg``, ``png``, ``webp``, ``gif``)."""
    data, content_type, _ = image_bytes(image, format)
    return encode(data, content_type)
