"""How a request is shown: status context, images, progress, and the pages' Jinja filters.

The views in :mod:`falweb.pages` decide what happens; this module decides what a person
sees of a history row (no network, no writes).
"""

import json
import re
import time
from urllib.parse import urlsplit

from flask import request

from falweb import backend
from falweb import history
from falweb.client.outputs import output_file_name
from falweb.client.status import step_of
from falweb.media_kinds import is_video_url
from falweb.schemas import IMAGE_SIZE_PRESETS
from falweb.schemas import get_endpoint
from falweb.schemas.fields import IMAGE_SIZE_SIDE_DEFAULT

# Log lines shown while a request runs: the newest ones, enough to follow a long run. A
# finished request shows all of them.
RUNNING_LOG_LINES = 300
# Strings longer than this (data URIs of sync_mode images) are shortened in the raw output view.
RAW_STRING_LIMIT = 200


def init_app(app):
    """Register the Jinja filters the templates use."""
    app.jinja_env.filters["pretty_json"] = pretty_json
    app.jinja_env.filters["duration"] = duration
    app.jinja_env.filters["timestamp"] = timestamp
    app.jinja_env.filters["size_label"] = size_label
    app.jinja_env.filters["safe_url"] = safe_url
    app.jinja_env.tests["video_url"] = is_video_url


def pretty_json(value):
    """``value`` as indented JSON; big integers (seeds) stay exact, as Python prints them."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


# Words of fal's image_size preset names that are abbreviations, written as people write them.
_SIZE_WORDS = {"hd": "HD", "sd": "SD", "uhd": "UHD"}


def size_label(value, pixels=False):
    """An ``image_size`` as a person reads it: ``portrait_4_3`` → "Portrait 4:3",
    ``square_hd`` → "Square HD", ``{"width": 768, "height": 1024}`` → "768 × 1024".

    ``pixels``: a preset's width × height follows in parentheses.
    """
    if isinstance(value, dict):
        width = value.get("width", IMAGE_SIZE_SIDE_DEFAULT)
        height = value.get("height", IMAGE_SIZE_SIDE_DEFAULT)
        return f"{width} × {height}"
    if not isinstance(value, str):
        return "" if value is None else str(value)
    words = []
    for word in value.split("_"):
        # Neighbouring numbers are a ratio: "16", "9" → "16:9".
        if word.isdigit() and words and words[-1][-1:].isdigit():
            words[-1] += f":{word}"
        else:
            words.append(_SIZE_WORDS.get(word, word))
    label = " ".join(words)
    label = label[:1].upper() + label[1:]
    if pixels and value in IMAGE_SIZE_PRESETS:
        width, height = IMAGE_SIZE_PRESETS[value]
        label += f" ({width} × {height})"
    return label


# What browsers drop from a URL before reading its scheme: tabs and newlines anywhere,
# C0 controls and spaces at either end (so "java\tscript:" is still javascript:).
_URL_IGNORED = re.compile(r"[\t\n\r]")
_URL_EDGES = "".join(chr(code) for code in range(0x21))
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def safe_url(value):
    """``value`` when a page may put it in ``href``/``src``, else "".

    Results and history come from a backend (or a webhook), not from this app: only
    http(s) URLs, ``data:image/*`` and this site's own paths pass; ``javascript:``,
    ``vbscript:``, other ``data:`` and every other scheme become "".
    """
    if not isinstance(value, str):
        return ""
    url = _URL_IGNORED.sub("", value).strip(_URL_EDGES)
    scheme = _SCHEME.match(url)
    if scheme is None:
        # No scheme: a path on this site ("/local/cdn/…"), or "//host/…" on this page's scheme.
        return url if url.startswith("/") else ""
    scheme = scheme.group(1).lower()
    if scheme in ("http", "https"):
        return url
    if scheme == "data" and url[5:].lstrip().lower().startswith("image/"):
        return url
    return ""


def duration(seconds):
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


def timestamp(epoch):
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def shorten(value):
    """``value`` with long strings cut, for the raw output view."""
    if isinstance(value, str) and len(value) > RAW_STRING_LIMIT:
        return f"{value[:60]}… ({len(value)} characters)"
    if isinstance(value, dict):
        return {key: shorten(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shorten(item) for item in value]
    return value


def status_context(row, poll_error=None):
    """What the request page and its status partial render for ``row``."""
    done = row["status"] in history.TERMINAL
    result = row.get("result") or {}
    logs = row["logs"] if done else row["logs"][-RUNNING_LOG_LINES:]
    return {
        "row": row,
        "endpoint": get_endpoint(row["endpoint_id"]),
        "done": done,
        "elapsed": (row.get("finished") or time.time()) - row["created"],
        "logs": logs,
        "hidden_logs": len(row["logs"]) - len(logs),
        "progress": step_of(row["logs"]) if row["status"] == "IN_PROGRESS" else None,
        "result": result,
        "images": images(row, result),
        # Every other output by its kind: video, audio, single images, files, text.
        "media": media_of(result),
        "raw_output": shorten(result),
        "poll_error": poll_error,
        "synthetic": row["synthetic"],
    }


def media_of(result):
    from falweb.result_media import media_of

    return media_of(result)


def images(row, result):
    """The result's images as the templates show them (browser URL, size, NSFW flag)."""
    found_images = result.get("images") if isinstance(result, dict) else None
    flags = result.get("has_nsfw_concepts") if isinstance(result, dict) else None
    found = []
    for index, image in enumerate(found_images if isinstance(found_images, list) else []):
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            continue
        content_type = image.get("content_type") or "image/jpeg"
        found.append(
            {
                "index": index,
                # "" for a URL no page may link (javascript:, say): the template says so.
                "url": safe_url(browser_url(image["url"])),
                "width": image.get("width"),
                "height": image.get("height"),
                "content_type": content_type,
                "file_name": output_file_name(row["request_id"], index, content_type,
                                              image["url"]),
                "nsfw": bool(flags[index])
                if isinstance(flags, list) and index < len(flags)
                else False,
            }
        )
    return found


def browser_url(url):
    """``url`` as this page's browser should fetch it.

    The embedded runtime names its files by the address the server is bound to (often
    127.0.0.1), which a browser on another machine cannot reach; its own path on this app
    works from anywhere, and survives the app moving to another port.
    """
    if backend.local_app() is None:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[" and the like, from a backend: shown as text only
        return url
    mount = request.script_root + backend.LOCAL_MOUNT + "/"
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme in ("http", "https") and parts.path.startswith(mount):
        if loopback or parts.netloc == request.host:
            return parts.path + (f"?{parts.query}" if parts.query else "")
    return url


def history_item(row):
    """A history row as the history list shows it."""
    return {
        **row,
        # An unsafe URL (javascript:, say) shows the status instead of a thumbnail.
        "thumbnail_url": safe_url(browser_url(row["thumbnail_url"])) or None
        if row["thumbnail_url"] else None,
        "done": row["status"] in history.TERMINAL,
    }

