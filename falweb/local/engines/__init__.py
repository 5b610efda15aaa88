"""Engines turn a validated input into an output. They never see HTTP.

An engine is an object with ``run(input, ctx) -> dict``. ``ctx`` is an
:class:`EngineContext`: ``log(message)``, ``progress(step, total)`` (raises
:class:`Cancelled` once the request is cancelled), ``files`` (decoded file inputs by field
name), ``image(field)`` (an image input, decoded) and ``save(data, content_type, file_name)
-> url``. An input the engine cannot use raises :class:`InvalidInput` naming its field.
"""

import io


class Cancelled(Exception):
    """Raised inside an engine when its request was cancelled; the worker records it."""


class InvalidInput(Exception):
    """An input field that cannot be used; the request fails as fal's 422 naming ``field``."""

    def __init__(self, field, message):
        super().__init__(field, message)
        self.field = field
        self.message = message


class EngineContext:
    """What an engine may do besides computing: report, check for cancel, store files."""

    def __init__(self, endpoint, *, log, progress, save, files=None):
        self.endpoint = endpoint
        self.files = files or {}
        self._log = log
        self._progress = progress
        self._save = save

    def log(self, message, level="INFO"):
        self._log(message, level)

    def progress(self, step, total):
        """Report a finished step; raises :class:`Cancelled` if the request was cancelled."""
        if self._progress(step, total):
            raise Cancelled()

    def save(self, data, content_type, file_name):
        return self._save(data, content_type, file_name)

    def image(self, field):
        """The image input ``field`` decoded (a loaded PIL image), or None when absent.

        The runtime checked its header (an image, not too many pixels) before the engine
        runs; pixels that do not decode (a truncated file) raise :class:`InvalidInput`.
        """
        from PIL import Image

        from falweb.local.inputs import IMAGE_FORMATS

        data = self.files.get(field)
        if data is None:
            return None
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as exc:
            raise InvalidInput(field, f"image could not be decoded ({exc})") from None
        return image


def get_engine(name, **options):
    """The engine called ``name`` (``"preview"`` or ``"diffusers"``), built with ``options``."""
    if name == "preview":
        from falweb.local.engines.preview import PreviewEngine

        return PreviewEngine(**options)
    if name == "diffusers":
        from falweb.local.engines.diffusers_engine import DiffusersEngine

        return DiffusersEngine(**options)
    raise ValueError(f"unknown engine {name!r}; available: preview, diffusers")
