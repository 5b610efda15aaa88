"""Engines turn a validated input into an output. They never see HTTP.

An engine is an object with ``run(input, ctx) -> dict``. ``ctx`` is an
:class:`EngineContext`: ``log(message)``, ``progress(step, total)`` (raises
:class:`Cancelled` once the request is cancelled), ``files`` (decoded file inputs by field
name) and ``save(data, content_type, file_name) -> url``.
"""


class Cancelled(Exception):
    """Raised inside an engine when its request was cancelled; the worker records it."""


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


def get_engine(name, **options):
    """The engine called ``name`` (``"preview"`` or ``"diffusers"``), built with ``options``."""
    if name == "preview":
        from falweb.local.engines.preview import PreviewEngine

        return PreviewEngine(**options)
    if name == "diffusers":
        from falweb.local.engines.diffusers_engine import DiffusersEngine

        return DiffusersEngine(**options)
    raise ValueError(f"unknown engine {name!r}; available: preview, diffusers")
