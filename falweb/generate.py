"""``falweb generate``: one generation from the command line, with a progress bar.

Backend: fal when a key is set (``FAL_KEY`` or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``) and
``FALWEB_BACKEND`` is not ``local``; otherwise the local runtime at ``FALWEB_LOCAL_URL``,
default ``http://127.0.0.1:5000/local`` (the one ``falweb serve`` embeds).

stdout gets labelled lines: ``request_id: ...``, ``seed: ...`` (when the output has one) and
``saved: PATH`` for each downloaded image; stderr gets the progress. Exit status 1 with a
one-line error on invalid input or a failed request.
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
               "image/gif": "gif", "video/mp4": "mp4", "video/webm": "webm",
               "audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3",
               "text/plain": "txt"}
#: Output properties printed as text (an LLM's answer, a caption, a transcript).
TEXT_OUTPUTS = ("output", "text", "response", "answer", "caption", "transcript",
                "transcription", "reasoning", "error")
_STEP = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse_input(prompt, params):
    """The input dict from ``--prompt`` and ``--param key=value`` (values parsed as JSON when
    they parse, else kept as strings). Raises ``ValueError`` for a param without ``=``."""
    data = {} if prompt is None else {"prompt": prompt}
    for param in params or []:
        key, sep, value = param.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {param!r}: expected KEY=VALUE")
        try:
            data[key.strip()] = json.loads(value)
        except ValueError:
            data[key.strip()] = value
    return data


def as_documented_types(endpoint_id, data, params):
    """``data`` with a VALUE that parsed as JSON put back as the text it was where the
    endpoint's schema wants a string there (kling's ``duration=5`` is the string "5")."""
    from marshmallow import fields

    from falweb.schemas import get_endpoint

    endpoint = get_endpoint(endpoint_id)
    if endpoint is None:
        return data
    schema_fields = endpoint.input_schema().fields
    for param in params or []:
        key, _, raw = param.partition("=")
        field = schema_fields.get(key.strip())
        if isinstance(field, fields.String) and not isinstance(data.get(key.strip()), str):
            data[key.strip()] = raw
    return data


def make_client(environ=None):
    """The client for the configured backend (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if backend_of(environ) == "fal":
        return FalClient(hosts=Hosts())
    return FalClient(hosts=Hosts(environ.get("FALWEB_LOCAL_URL") or DEFAULT_LOCAL_URL))


class Progress:
    """Where a request is, on ``stream``: its queue position while it waits, then a step bar
    taken from the log lines that count steps ("Step 3/25", tqdm's "3/25"). Each log line is
    printed above the bar. Use it as a context manager so the bar's line is ended however the
    request ends.

    On a terminal the bar is one line redrawn in place, and drawn again under every log line,
    so the two never overwrite each other and the bar moves with each step even when several
    arrive in one update. Anywhere else (a pipe, a file) only plain lines: the log lines and
    each change of state, with no carriage returns; the steps are in the log lines already.
    """

    def __init__(self, stream=None, width=30):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.seen = 0
        self.step = None  # (done, total) from the newest log line that counts steps
        self.shown = None  # the state on screen: the bar on a terminal, else the last line

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()

    def enqueued(self, request_id):
        self._print(f"queued {request_id}")
        # At once, not at the first status: that can take a while on a busy queue.
        self._show("in queue")

    def update(self, status):
        if not status.done:
            # Where the request is first, then the lines it logged there.
            self._show(self._state(status))
        for entry in status.logs[self.seen:]:
            message = entry.get("message", "")
            if match := _STEP.search(message):
                self.step = int(match.group(1)), max(int(match.group(2)), 1)
            self._print(f"  {message}")
        self.seen = max(self.seen, len(status.logs))
        if status.done:
            bar = self._bar()
            self._show(f"{bar} completed" if bar else "completed")
            self.finish()

    def _state(self, status):
        if status.status == "IN_QUEUE":
            position = status.queue_position
            return "in queue" if position is None else f"in queue, position {position}"
        return self._bar() or "in progress"

    def finish(self):
        """End the bar's line, so that what is written next starts on a line of its own."""
        if self.tty and self.shown is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = None

    def _bar(self):
        """The step bar, on a terminal once a log line has counted a step; else None."""
        if not (self.tty and self.step):
            return None
        done, total = self.step
        filled = min(self.width, self.width * done // total)
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"

    def _print(self, text):
        if self.tty and self.shown is not None:
            # The line takes the bar's place, and the bar is drawn again under it.
            before, self.shown = self.shown, None
            self.stream.write(f"\r\x1b[K{text}\n")
            self._show(self._bar() or before)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _show(self, text):
        if text == self.shown:
            return
        self.shown = text
        self.stream.write(f"\r\x1b[K{text}" if self.tty else text + "\n")
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


def output_files(result):
    """(name stem, file dict) of every file in an output: each of ``images`` (``0``,
    ``1``...), then every other property holding a fal ``File`` or a list of them
    (``video``, ``audio``, ``image``...)."""
    found = [(str(i), image) for i, image in enumerate(result.get("images") or [])
             if isinstance(image, dict) and isinstance(image.get("url"), str)]
    for key, value in result.items():
        if key == "images":
            continue
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            found.append((key, value))
        elif isinstance(value, list) and value and all(
                isinstance(v, dict) and isinstance(v.get("url"), str) for v in value):
            found += [(f"{key}-{i}", v) for i, v in enumerate(value)]
    return found


def main(args, client=None, stdout=None, stderr=None):
    """Run ``falweb generate``; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        data = as_documented_types(args.endpoint_id, parse_input(args.prompt, args.param),
                                   args.param)
    except ValueError as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    client = client or make_client()
    try:
        with Progress(stderr) as progress:
            # The status stream brings each step as it happens; polling would show them in
            # bursts, half a second apart, or not at all for a short run.
            result = client.subscribe(args.endpoint_id, data, logs=True, mode="streaming",
                                      on_enqueue=progress.enqueued,
                                      on_queue_update=progress.update)
        os.makedirs(args.out, exist_ok=True)
        paths = []
        for stem, file in output_files(result):
            ext = _extension(file.get("content_type"), file.get("url", ""))
            path = os.path.join(args.out, f"{result.request_id}-{stem}.{ext}")
            download(client, file, path)
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
    print(f"request_id: {result.request_id}", file=stdout)
    if result.get("seed") is not None:
        print(f"seed: {result['seed']}", file=stdout)
    for path in paths:
        print(f"saved: {path}", file=stdout)
    for key in TEXT_OUTPUTS:
        if isinstance(result.get(key), str) and result[key]:
            print(f"{key}: {result[key]}", file=stdout)
    return 0
