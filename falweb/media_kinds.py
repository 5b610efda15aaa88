"""What kind of media a file output is (image, video, audio, other), from its content type or
its URL; shared by the request page and the history's thumbnails."""

import mimetypes
import posixpath
from urllib.parse import urlsplit


def kind_of(content_type, url):
    """"image", "video", "audio" or "file" for a file's content type, else its URL."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if not content_type and isinstance(url, str) and not url.startswith("data:"):
        try:
            path = urlsplit(url).path
        except ValueError:
            path = ""
        content_type = mimetypes.guess_type(posixpath.basename(path))[0] or ""
    if isinstance(url, str) and url.startswith("data:"):
        content_type = content_type or url[5:].split(";")[0].split(",")[0]
    for kind in ("image", "video", "audio"):
        if content_type.startswith(kind + "/"):
            return kind
    return "file"


def is_video_url(url):
    """True when a thumbnail URL is a video (shown with ``<video>``, not ``<img>``)."""
    return isinstance(url, str) and kind_of(None, url) == "video"


def thumbnail_url(result):
    """The URL a history entry shows for ``result``: its first image, else the first image
    or video among its file outputs (the history shows a video's first frame)."""
    if not isinstance(result, dict):
        return None
    images = result.get("images")
    if isinstance(images, list) and images and isinstance(images[0], dict):
        return images[0].get("url")
    for value in result.values():
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            if kind_of(value.get("content_type"), value["url"]) in ("image", "video"):
                return value["url"]
    return None
