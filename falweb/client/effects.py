"""What a call needs done, apart from doing it: one definition of every fal call for the
sync and the async client.

A *plan* is a generator that yields effects (send this request, sleep, open a stream, read
its next event, call the user's callback) and receives what each one produced; an error is
thrown back into the plan where it yielded, so its ``try``/``except`` works the same way
under both clients. :func:`drive` runs a plan with blocking I/O, :func:`drive_async` with
``await``; each client supplies only its ``perform`` (requests or httpx). URL building,
headers, retry decisions, status parsing and the subscribe loop therefore exist once.
"""

import inspect
from dataclasses import dataclass
from dataclasses import field
from typing import Any


@dataclass
class Call:
    """One HTTP request. Its answer is an :class:`Answer` (error statuses are raised as
    :class:`~falweb.client.errors.ApiError`).

    ``url`` is canonical (``https://queue.fal.run/...``); the transport maps it onto the
    backend or the proxy. ``direct``: a storage upload URL, sent without credentials and
    never through the proxy, with ``data`` (bytes or a binary file) as the raw body.
    ``retry``: use the client's :class:`~falweb.client.retry.RetryPolicy` (only calls that
    create no work). ``deadline``: a ``time.monotonic()`` value capping every wait.
    """

    method: str
    url: str
    input: Any = None
    headers: dict | None = None
    retry: bool = False
    timeout: float | None = None
    deadline: float | None = None
    accept: str = "application/json"
    direct: bool = False
    data: Any = None


@dataclass
class Answer:
    """A 2xx answer: the decoded ``body`` (JSON, bytes for octet-stream, else text), the
    response ``headers`` (case-insensitive) and ``status``."""

    body: Any
    headers: Any = field(default_factory=dict)
    status: int = 200

    @property
    def request_id(self):
        return self.headers.get("x-fal-request-id") or None


@dataclass
class Sleep:
    seconds: float


@dataclass
class OpenStream:
    """Open ``call`` as an event stream; produces the client's stream object (a
    :class:`~falweb.client.streaming.FalStream` or its async twin), or raises the error the
    backend answered with. ``keep``: the stream outlives the plan (it is the plan's value);
    otherwise the driver closes it when the plan ends, however it ends."""

    call: Call
    keep: bool = False


@dataclass
class NextEvent:
    """The stream's next event, or :data:`END`."""

    stream: Any


@dataclass
class Notify:
    """Call a user callback; the async client awaits it when it returns an awaitable (fal's
    async client takes sync and async callbacks alike)."""

    callback: Any
    args: tuple = ()


END = object()


class _Stepper:
    """Walks a plan: ``effect`` is what it waits on; ``send``/``throw`` answer it."""

    def __init__(self, plan):
        self.plan = plan
        self.done = False
        self.value = None
        self._advance(plan.send, None)

    def _advance(self, how, what):
        try:
            self.effect = how(what)
        except StopIteration as stop:
            self.done, self.value, self.effect = True, stop.value, None

    def send(self, value):
        self._advance(self.plan.send, value)

    def throw(self, error):
        self._advance(self.plan.throw, error)


def _owned(effect):
    """A stream the plan opened for itself: the driver closes it when the plan ends."""
    return type(effect) is OpenStream and not effect.keep


def drive(plan, perform):
    """Run ``plan`` to its end with blocking ``perform(effect)``; return its value."""
    step, streams = _Stepper(plan), []
    try:
        while not step.done:
            try:
                result = perform(step.effect)
            except Exception as exc:
                step.throw(exc)
            else:
                if _owned(step.effect):
                    streams.append(result)
                step.send(result)
        return step.value
    finally:
        plan.close()
        for stream in streams:
            stream.close()


async def drive_async(plan, perform):
    """Run ``plan`` to its end with ``await perform(effect)``; return its value."""
    step, streams = _Stepper(plan), []
    try:
        while not step.done:
            try:
                result = await perform(step.effect)
            except Exception as exc:
                step.throw(exc)
            else:
                if _owned(step.effect):
                    streams.append(result)
                step.send(result)
        return step.value
    finally:
        plan.close()
        for stream in streams:
            await stream.aclose()


def notify(effect):
    """Call a :class:`Notify` callback (sync clients)."""
    return effect.callback(*effect.args)


async def notify_async(effect):
    """Call a :class:`Notify` callback, awaiting what it returns if it is awaitable."""
    value = effect.callback(*effect.args)
    if inspect.isawaitable(value):
        value = await value
    return value
