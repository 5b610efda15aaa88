"""File inputs: the runtime's own storage URLs, Base64 data URIs, or public http(s) URLs.

Public URLs are fetched with a size limit and a timeout, never from loopback, private,
link-local or other non-global addresses: each connection (each redirect hop) resolves the
name once, checks every address and connects only to those (:mod:`falweb.local.netguard`),
so a resolver that changes its answer between a check and the connection gains nothing.
Image inputs are checked from their header, before any pixel is decoded: a file that is
not an image, or one with more pixels than allowed (a "decompression bomb": a small file
that decodes to gigabytes), is refused.
"""

import base64
import binascii
import io
import re
from urllib.parse import unquote
from urllib.parse import urlsplit

import requests
from PIL import Image
from PIL import UnidentifiedImageError

from falweb.local.netguard import AddressRefused
from falweb.local.netguard import public_session
from falweb.local.netguard import refusal
from falweb.local.storage import NotFound

FETCH_TIMEOUT = (5, 15)
MAX_REDIRECTS = 3
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,(.*)$",
                       re.DOTALL)
_OWN_FILE = re.compile(r"/cdn/files/([A-Za-z0-9]+)/[^/]+$")
PRIVATE_URL = ("URL points to a private or local address; only public URLs, data URIs or "
               "uploaded files are accepted")


def _image_formats():
    # The formats people send as image inputs. Only these parsers see untrusted bytes, not
    # every format Pillow knows (EPS would call Ghostscript on load).
    Image.init()
    return tuple(f for f in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
                 if f in Image.OPEN)


IMAGE_FORMATS = _image_formats()


class InputFileError(Exception):
    """A file input that cannot be read; the message says why."""


def decode_data_uri(value, limit):
    """(bytes, declared content type) of a data URI (RFC 2397: text/plain when omitted)."""
    match = _DATA_URI.match(value)
    if not match:
        raise InputFileError("Invalid data URI")
    content_type = (match.group(1) or "text/plain").lower()
    payload = match.group(4)
    if match.group(3):
        if len(payload) * 3 // 4 > limit:
            raise InputFileError(f"Data URI larger than {limit} bytes")
        try:
            return base64.b64decode(payload, validate=True), content_type
        except (binascii.Error, ValueError):
            raise InputFileError("Data URI is not valid Base64") from None
    data = unquote(payload).encode()
    if len(data) > limit:
        raise InputFileError(f"Data URI larger than {limit} bytes")
    return data, content_type


def fetch_public(url, limit, session=None):
    """(bytes, content type the server declared) at a public http(s) URL.

    Each hop (redirects included) connects through :mod:`falweb.local.netguard`: the name
    is resolved once and only its public addresses are connected to.
    """
    own = session is None
    session = session or public_session()
    try:
        return _fetch(session, url, limit)
    finally:
        if own:
            session.close()


def _fetch(session, url, limit):
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputFileError("Only http(s) URLs are accepted")
        try:
            answer = session.get(url, stream=True, timeout=FETCH_TIMEOUT, allow_redirects=False)
        except (requests.RequestException, AddressRefused) as exc:
            if refusal(exc) is not None:
                raise InputFileError(PRIVATE_URL) from None
            raise InputFileError(f"Could not fetch the URL ({type(exc).__name__})") from None
        with answer:
            if answer.is_redirect and answer.headers.get("location"):
                url = requests.compat.urljoin(url, answer.headers["location"])
                continue
            if answer.status_code != 200:
                raise InputFileError(f"Fetching the URL answered HTTP {answer.status_code}")
            data = bytearray()
            for chunk in answer.iter_content(64 * 1024):
                data += chunk
                if len(data) > limit:
                    raise InputFileError(f"File at the URL is larger than {limit} bytes")
            return bytes(data), answer.headers.get("content-type")
    raise InputFileError("Too many redirects")


def own_file_id(url, base_url):
    """The storage file id if ``url`` is one of this runtime's file URLs, else None."""
    if not url.startswith(base_url.rstrip("/") + "/cdn/files/"):
        return None
    match = _OWN_FILE.search(urlsplit(url).path)
    return match.group(1) if match else None


def read_input_file(value, *, storage, base_url, limit, allow_fetch=True):
    """(bytes, declared content type or None) behind a file input value, or None when it
    would need fetching and ``allow_fetch`` is false; :class:`InputFileError` with a reason
    when it cannot be read."""
    if not isinstance(value, str):
        raise InputFileError("Expected a URL or data URI")
    if value.startswith("data:"):
        return decode_data_uri(value, limit)
    file_id = own_file_id(value, base_url)
    if file_id is not None:
        try:
            return storage.read(file_id)
        except NotFound:
            raise InputFileError("No such uploaded file") from None
    if not allow_fetch:
        return None
    return fetch_public(value, limit)


def check_image(data, content_type, max_pixels):
    """(width, height) of the image in ``data``, read from its header: no pixel is decoded.

    :class:`InputFileError` when it is not an image in one of :data:`IMAGE_FORMATS` (the
    message names the declared ``content_type``) or when it has more than ``max_pixels``
    pixels.
    """
    declared = (content_type or "").split(";")[0].strip() or "unknown type"
    try:
        # Image.open reads the header only; the pixels are decoded on load().
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (Image.MAX_IMAGE_PIXELS, which the runtime sets to the same
        # limit) spoke first; its warning arrives as an exception where warnings are errors.
        raise InputFileError(f"image is larger than the {max_pixels} pixels allowed") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InputFileError(f"not an image ({declared}); accepted: "
                             f"{', '.join(IMAGE_FORMATS)}") from None
    if width * height > max_pixels:
        raise InputFileError(f"image of {width}x{height} pixels is larger than the "
                             f"{max_pixels} pixels allowed")
    return width, height
