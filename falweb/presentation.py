"""How a request and a form are shown: status and form contexts, images, progress, and the
pages' Jinja filters.

The views in :mod:`falweb.pages` decide what happens; this module decides what a person
sees of a history row (no network, no writes).
"""

import json
import time

from falweb import history
from falweb import history_sync
from falweb.client import errors as client_errors
from falweb.client.outputs import output_file_name
from falweb.client.status import step_of
from falweb.media_kinds import is_video_url
from falweb.page_urls import browser_url
from falweb.page_urls import safe_url
from falweb.schemas import IMAGE_SIZE_PRESETS
from falweb.schemas import get_endpoint
from falweb.schemas.fields import IMAGE_SIZE_SIDE_DEFAULT
from falweb.schemas.forms import blank_rows
from falweb.schemas.forms import uses_text_box

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


def shorten(value, limit=RAW_STRING_LIMIT, cut=None):
    """``value`` with each string longer than ``limit`` replaced by ``cut(string)`` (by
    default its start and length: the raw output view), in dicts and lists at any depth."""
    if isinstance(value, str) and len(value) > limit:
        return cut(value) if cut else f"{value[:60]}… ({len(value)} characters)"
    if isinstance(value, dict):
        return {key: shorten(item, limit, cut) for key, item in value.items()}
    if isinstance(value, list):
        return [shorten(item, limit, cut) for item in value]
    return value


def status_context(row, poll_error=None):
    """What the request page and its status partial render for ``row``."""
    done = row["status"] in history.TERMINAL
    result = row.get("result") or {}
    logs = row["logs"] if done else row["logs"][-RUNNING_LOG_LINES:]
    endpoint = get_endpoint(row["endpoint_id"])
    return {
        "row": row,
        "endpoint": endpoint,
        # "Re-run with a new seed" only where there is a seed to draw (not for an LLM, say).
        "takes_seed": endpoint is None or "seed" in endpoint.input_schema._declared_fields,
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


def describe_error(exc):
    """What to show of a client error: fal's ``detail`` when there is one (escaped later)."""
    if isinstance(exc, client_errors.ApiError):
        return history_sync.error_of(exc)
    if isinstance(exc, client_errors.FalConnectionError):
        return {"status": None, "detail": f"Could not reach the backend ({exc.message})."}
    if isinstance(exc, client_errors.FalTimeoutError):
        return {"status": None, "detail": "The backend did not answer in time."}
    return {"status": None, "detail": str(exc)}


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


def history_item(row):
    """A history row as the history list shows it."""
    return {
        **row,
        # An unsafe URL (javascript:, say) shows the status instead of a thumbnail.
        "thumbnail_url": safe_url(browser_url(row["thumbnail_url"])) or None
        if row["thumbnail_url"] else None,
        "done": row["status"] in history.TERMINAL,
    }


def form_context(endpoint, fields, values, errors=None, upstream_error=None):
    """What the form templates render (the form page, the playground, the 422 partial)."""
    return {
        # A new token per rendering: posting this form twice makes one request.
        "submission_token": history.new_submission_token(),
        "endpoint": endpoint,
        "fields": fields,
        "values": values,
        "errors": errors or {},
        "upstream_error": upstream_error,
        "blank_rows": blank_rows,
        "uses_text_box": uses_text_box,
        # An error inside the folded "Advanced" group must not stay hidden.
        "labels": {f.name: f.label for f in fields},
        "open_advanced": any(
            key.split(".")[0] in {f.name for f in fields if f.advanced} for key in errors or {}
        ),
    }
