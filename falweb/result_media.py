"""What an output holds besides its ``images`` list, by shape and content type.

Any endpoint's output is a JSON object; the request page shows each top-level property by
what it is: a fal ``File``/``Image`` object (or a list of them) as an image, a ``<video>``, an
``<audio>`` or a download, chosen by its ``content_type`` (else its file extension); text as
text (escaped, line breaks kept); everything else stays in the output JSON below.
"""

import posixpath
from urllib.parse import urlsplit

from falweb.media_kinds import kind_of
from falweb.page_urls import browser_url
from falweb.page_urls import safe_url

#: Properties whose text is the answer (an LLM's output, a caption, a transcript).
TEXT_KEYS = ("output", "text", "response", "answer", "content", "caption", "transcript",
             "transcription", "description", "result", "reasoning", "error")
#: Properties already shown elsewhere on the page (the image gallery, the facts list).
SHOWN_ELSEWHERE = frozenset({"images", "seed", "timings", "has_nsfw_concepts", "prompt"})


def _file(key, value, index=None):
    url = value.get("url")
    if not isinstance(url, str):
        return None
    content_type = value.get("content_type") if isinstance(value.get("content_type"), str) \
        else None
    return {
        "key": key if index is None else f"{key}[{index}]",
        "kind": kind_of(content_type, url),
        # "" for a URL no page may link (javascript:, say): the template says so.
        "url": safe_url(browser_url(url)),
        "content_type": content_type or "",
        "file_name": value.get("file_name") or posixpath.basename(urlsplit(url).path) or key,
        "width": value.get("width"),
        "height": value.get("height"),
    }


def media_of(result):
    """``{"files": [...], "texts": [(key, text)]}`` for the page, in the output's order."""
    files, texts = [], []
    if not isinstance(result, dict):
        return {"files": files, "texts": texts}
    for key, value in result.items():
        if key in SHOWN_ELSEWHERE:
            continue
        if isinstance(value, dict) and "url" in value:
            found = _file(key, value)
            if found:
                files.append(found)
        elif isinstance(value, list) and value and all(
                isinstance(item, dict) and "url" in item for item in value):
            files += [f for i, item in enumerate(value) if (f := _file(key, item, i))]
        elif isinstance(value, str) and value and (key in TEXT_KEYS or "\n" in value):
            texts.append((key, value))
    return {"files": files, "texts": texts}
