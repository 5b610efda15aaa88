"""``falweb generate``: one generation from the command line, with a progress bar.

Backend: fal when a key is set (``FAL_KEY`` or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``) and
``FALWEB_BACKEND`` is not ``local``; otherwise the local runtime at ``FALWEB_LOCAL_URL``,
default ``http://127.0.0.1:5000/local`` (the one ``falweb serve`` embeds).

stdout gets the request id and the paths of the downloaded images, one per line; stderr
gets the progress. Exit status 1 with a one-line error on invalid input or a failed request.
"""

import base64
import binascii
import json
import os
import re
import sys
from urllib.parse import unquote_to_bytes

from falweb.client import ApiError
from falweb.client import FalClient
from falweb.client import FalConnectionError
from falweb.client import FalError
from falweb.client import ValidationError
from falweb.config import backend_of
from falweb.hosts import Hosts

DEFAULT_LOCAL_URL = "http://127.0.0.1:5000/local"
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp",
               "image/gif": "gif"}
_STEP = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse_input(prompt, params):
    """The input dict from ``--prompt`` and ``--param key=value`` (values parsed as JSON when
    they parse, else kept as strings). Raises ``ValueError`` for a param without ``=``."""
    data = {"prompt": prompt}
    for param in params or []:
        key, sep, value = param.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {param!r}: expected KEY=VALUE")
        try:
            data[key.strip()] = json.loads(value)
        except ValueError:
            data[key.strip()] = value
    return data


def make_client(environ=None):
    """The client for the configured backend (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if backend_of(environ) == "fal":
        return FalClient(hosts=Hosts())
    return FalClient(hosts=Hosts(environ.get("FALWEB_LOCAL_URL") or DEFAULT_LOCAL_URL))


class Progress:
    """Draws queue position, then a step bar, on ``stream``; new log lines are printed above
    it. On a terminal the bar redraws in place; elsewhere each change is one line."""

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.seen = 0
        self.last_line = None

    def enqueued(self, request_id):
        self._print(f"queued {request_id}")

    def update(self, status):
        logs = status.logs
        for entry in logs[self.seen:]:
            self._print(f"  {entry.get('message', '')}")
        self.seen = max(self.seen, len(logs))
        if status.status == "IN_QUEUE":
            self._bar(f"in queue, position {status.queue_position}")
        elif status.status == "IN_PROGRESS":
            step = next((m for entry in reversed(logs)
                         if (m := _STEP.search(entry.get("message", "")))), None)
            if step:
                done, total = int(step.group(1)), max(int(step.group(2)), 1)
                filled = min(self.width, self.width * done // total)
                self._bar(f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
            else:
                self._bar("in progress")
        else:
            self._bar("completed")
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def _print(self, text):
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self.last_line:
            self.stream.write(self.last_line)
        self.stream.flush()

    def _bar(self, text):
        if text == self.last_line:
            return
        self.last_line = text
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _extension(content_type, url):
    ext = _EXTENSIONS.get((content_type or "").split(";")[0].strip().lower())
    if ext:
        return ext
    match = re.search(r"\.([A-Za-z0-9]{2,5})(?:$|\?)", url if not url.startswith("data:") else "")
    return match.group(1).lower() if match else "bin"


def _decode_data_uri(uri):
    header, _, payload = uri.partition(",")
    content_type = header[5:].split(";")[0] or "text/plain"
    if header.endswith(";base64"):
        return content_type, base64.b64decode(payload, validate=False)
    return content_type, unquote_to_bytes(payload)


def download(client, image, path):
    """Write ``image`` (``{"url", "content_type"}``; the URL may be a data URI or a canonical
    fal CDN URL) to ``path``. Raises :class:`ApiError` / ``ValueError``."""
    url = image["url"]
    if url.startswith("data:"):
        _, data = _decode_data_uri(url)
        with open(path, "wb") as f:
            f.write(data)
        return
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not a downloadable image URL: {url[:100]!r}")
    try:
        url = client.hosts.resolve(url)
    except ValueError:
        pass  # not fal's: fetched as given
    with client.transport.session.get(url, stream=True, timeout=client.transport.timeout) as r:
        if not r.ok:
            raise ApiError(f"HTTP {r.status_code}: {r.reason} downloading {url[:100]}",
                           r.status_code)
        with open(path, "wb") as f:
            for chunk in r.iter_content(64 * 1024):
                f.write(chunk)


def main(args, client=None, stdout=None, stderr=None):
    """Run ``falweb generate``; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        data = parse_input(args.prompt, args.param)
    except ValueError as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    client = client or make_client()
    progress = Progress(stderr)
    try:
        result = client.subscribe(args.endpoint_id, data, logs=True,
                                  on_enqueue=progress.enqueued, on_queue_update=progress.update)
        os.makedirs(args.out, exist_ok=True)
        paths = []
        for i, image in enumerate(result.get("images") or []):
            ext = _extension(image.get("content_type"), image.get("url", ""))
            path = os.path.join(args.out, f"{result.request_id}-{i}.{ext}")
            download(client, image, path)
            paths.append(path)
    except ValidationError as exc:
        fields = ", ".join(dict.fromkeys(exc.fields)) or "input"
        print(f"error: invalid input ({fields}): {exc.details or exc.message}", file=stderr)
        return 1
    except ApiError as exc:
        print(f"error: the request failed with HTTP {exc.status}: {exc.message}", file=stderr)
        return 1
    except FalConnectionError as exc:
        hint = " (is `falweb serve` running? FALWEB_LOCAL_URL names another runtime)" \
            if client.hosts.is_local and not client.proxy_url else ""
        print(f"error: {exc}{hint}", file=stderr)
        return 1
    except (FalError, ValueError, OSError, binascii.Error) as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    print(result.request_id, file=stdout)
    for path in paths:
        print(path, file=stdout)
    return 0
