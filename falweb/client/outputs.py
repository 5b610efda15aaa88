"""Naming the files of a result: one rule for the pages, downloads and ``falweb generate``.

A result's file (``{"url", "content_type"}``) is saved as ``<request_id>-<index>.<ext>``,
the extension from its content type (``image/jpeg`` → ``jpg``), else from its URL's path,
else ``bin``.
"""

import re
from urllib.parse import urlsplit

# The usual spellings, where mimetypes' first guess is an odd one (.jpe, .mpga, ...).
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/ogg": "ogg",
    "text/plain": "txt",
    "application/json": "json",
}
_URL_EXTENSION = re.compile(r"\.([A-Za-z0-9]{2,5})$")


def extension_of(content_type, url=""):
    """The file extension (no dot) for a file of ``content_type`` found at ``url``."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in _EXTENSIONS:
        return _EXTENSIONS[kind]
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        match = _URL_EXTENSION.search(urlsplit(url).path)
        if match:
            return match.group(1).lower()
    subtype = kind.rpartition("/")[2]
    return subtype if re.fullmatch(r"[a-z0-9]{2,5}", subtype) else "bin"


def output_file_name(request_id, index, content_type, url=""):
    """``<request_id>-<index>.<ext>``: the name a result's ``index``-th file is saved as."""
    return f"{request_id}-{index}.{extension_of(content_type, url)}"
