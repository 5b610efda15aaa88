"""falweb's native API for your own model APIs, for people who do not want fal's SDK.

Written like a fal app, served by falweb's local runtime with fal's whole protocol (queue,
webhooks, storage, tokens, realtime); porting it to fal is changing the imports::

    from falweb.apps import App, Image, endpoint          # fal: import fal; fal.App, ...
    from pydantic import BaseModel

    class Input(BaseModel):
        prompt: str

    class Output(BaseModel):
        image: Image

    class TextToImage(App, name="text-to-image", max_concurrency=2):
        def setup(self):
            self.model = ...                 # once per process, before /health answers

        @endpoint("/")
        def generate(self, input: Input) -> Output:
            return Output(image=Image.from_pil(self.model(input.prompt)))

Host it with ``falweb apps add FILE::TextToImage``; it runs in falweb's own interpreter (it
needs pydantic: ``pip install 'falweb[apps]'``). What it supports of fal's ``App``: ``setup``,
``teardown``, ``health``, ``current_request``, the ``name`` / ``max_concurrency`` /
``keep_alive`` class keywords, ``@endpoint`` (pydantic input and output; a
:class:`StreamingResponse` for SSE), ``@realtime`` (msgpack frames, unary), ``File`` and
``Image`` outputs, and :class:`RequestCancelledException` (answered 499, as fal does).
"""

from dataclasses import dataclass

from falweb.apps.context import current_request as _current_request
from falweb.apps.files import File
from falweb.apps.files import Image

__all__ = ["App", "File", "Image", "RequestCancelledException", "StreamingResponse",
           "endpoint", "realtime"]


class RequestCancelledException(Exception):
    """Raise it in an endpoint when its request was cancelled: the call answers 499."""


class StreamingResponse:
    """An endpoint's streamed answer (SSE with ``media_type="text/event-stream"``), with
    Starlette's signature, so fal code that returns one ports by changing the import."""

    def __init__(self, content, media_type=None, status_code=200, headers=None):
        self.content = content
        self.media_type = media_type
        self.status_code = status_code
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class RouteSignature:
    path: str
    realtime: bool = False


def endpoint(path, *, is_websocket=False):
    """A POST route at ``path`` taking the method's pydantic input model."""
    def mark(function):
        if hasattr(function, "falweb_route"):
            raise ValueError(f"{function.__name__} already has a route")
        function.falweb_route = RouteSignature(path, realtime=is_websocket)
        return function

    return mark


def realtime(path, **_options):
    """A realtime websocket at ``path``: each binary msgpack frame is an input, each
    output goes back as one binary msgpack frame (errors: ``x-fal-error`` text frames)."""
    def mark(function):
        if hasattr(function, "falweb_route"):
            raise ValueError(f"{function.__name__} already has a route")
        function.falweb_route = RouteSignature(path, realtime=True)
        return function

    return mark


class App:
    """Subclass it with ``setup`` and decorated endpoints (see the module's docstring)."""

    falweb_kind = "native"
    app_name = None
    max_concurrency = None
    keep_alive = None
    version = None
    # Accepted for fal compatibility; the local runtime does not use them.
    requirements = []
    machine_type = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__()
        name = kwargs.pop("name", None)
        for key in ("max_concurrency", "keep_alive"):
            if key in kwargs:
                setattr(cls, key, kwargs.pop(key))
        # Other fal keywords (min_concurrency, ...) mean nothing on one machine.
        cls.host_kwargs = {"max_concurrency": cls.max_concurrency, **kwargs}
        if name is not None:
            cls.app_name = name
        elif "app_name" not in cls.__dict__:
            from falweb.local.apps.specs import fal_app_name

            cls.app_name = fal_app_name(cls.__name__)

    def setup(self):
        """Load what every request needs (weights); runs once before /health answers."""

    def teardown(self):
        """Release what ``setup`` took; runs when the process stops."""

    def health(self):
        return {"version": self.version or "unknown"}

    @property
    def current_request(self):
        return _current_request()

    @classmethod
    def routes(cls):
        """``{RouteSignature: method name}`` of the decorated methods, by path."""
        found = {}
        for name in dir(cls):
            member = getattr(cls, name, None)
            signature = getattr(member, "falweb_route", None)
            if signature is not None:
                found[signature] = name
        return dict(sorted(found.items(), key=lambda item: item[0].path))

    @classmethod
    def falweb_build(cls):
        """The WSGI app that serves this app (the runtime's bootstrap calls it)."""
        from falweb.apps.server import build_wsgi

        return build_wsgi(cls)
