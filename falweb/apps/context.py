"""The request a native app is answering now (``App.current_request``)."""

import contextvars
from dataclasses import dataclass
from dataclasses import field


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None
    endpoint: str | None
    headers: dict = field(default_factory=dict)


_current = contextvars.ContextVar("falweb_apps_request", default=None)


def current_request():
    return _current.get()


def current_request_id():
    request = _current.get()
    return request.request_id if request else None


def enter(request):
    return _current.set(request)


def leave(token):
    _current.reset(token)
