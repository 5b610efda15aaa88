"""Live mode: a browser websocket bridged to the backend's realtime endpoint (DESIGN §7).

The browser sends JSON inputs to ``/live/<endpoint_id>/ws``; the server validates them with
the endpoint's schema, fetches a realtime token with its own key, and talks msgpack to the
upstream ``wss://fal.run/<id>/realtime`` (or the local runtime's). Results come back to the
browser as JSON, images as data URIs, integers past JavaScript's exact range (seeds) as strings.
While the upstream is busy only the latest input is kept, so a person typing sees their newest
prompt, not a backlog. The key and the token never reach the browser.

:func:`pump` is a plain function over duck-typed sockets (``receive(timeout)``/``send`` on the
browser side, ``send_binary``/``recv_data`` on the upstream side), so it can be driven by
anything that speaks those.
"""

import base64
import json
import logging
import queue
import threading
import time
from urllib.parse import urlencode

import msgpack
import websocket
from flask import Blueprint
from flask import abort
from flask import current_app
from flask import render_template
from flask_sock import Sock
from marshmallow import ValidationError

from falweb import backend
from falweb import limits

bp = Blueprint("live", __name__, url_prefix="/live")
sock = Sock()
log = logging.getLogger("falweb.live")

RECEIVE_POLL = 0.5
# The largest integer a JavaScript number holds exactly (Number.MAX_SAFE_INTEGER).
JS_SAFE_INTEGER = 2**53 - 1


def init_app(app):
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": 25})
    # Live sessions at once in this process: each holds a server thread while it lasts.
    app.extensions["falweb_live"] = {
        "sessions": threading.BoundedSemaphore(int(app.config["FALWEB_LIVE_MAX_SESSIONS"]))}
    sock.init_app(app)
    app.register_blueprint(bp)


def _realtime_endpoints():
    from falweb.schemas import CATALOG

    return [endpoint for endpoint in CATALOG.values() if endpoint.realtime]


def _endpoint_or_404(endpoint_id):
    from falweb.schemas import get_endpoint

    endpoint = get_endpoint(endpoint_id)
    if endpoint is None or not endpoint.realtime:
        abort(404, description=f"No live mode for {endpoint_id!r}")
    return endpoint


@bp.get("/")
def index():
    """The endpoints that have a live mode."""
    return render_template("live/index.html", endpoints=_realtime_endpoints(), endpoint=None)


@bp.get("/<path:endpoint_id>")
def page(endpoint_id):
    """The live page of one realtime endpoint; 404 if it has none."""
    endpoint = _endpoint_or_404(endpoint_id)
    return render_template("live/index.html", endpoints=_realtime_endpoints(), endpoint=endpoint)


def _data_uris(value):
    # Binary image bytes in realtime outputs become data URIs the browser can show.
    if isinstance(value, dict):
        out = {k: _data_uris(v) for k, v in value.items()}
        if isinstance(value.get("content"), bytes):
            kind = value.get("content_type") or "image/jpeg"
            out["url"] = f"data:{kind};base64,{base64.b64encode(value['content']).decode()}"
            out.pop("content")
        return out
    if isinstance(value, list):
        return [_data_uris(v) for v in value]
    if isinstance(value, bytes):
        return f"data:application/octet-stream;base64,{base64.b64encode(value).decode()}"
    return value


def _exact_for_js(value):
    # bool is an int too, and must stay true/false.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JS_SAFE_INTEGER:
        return str(value)
    if isinstance(value, dict):
        return {key: _exact_for_js(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact_for_js(item) for item in value]
    return value


def browser_json(message):
    """``message`` as the JSON text the browser gets: integers beyond ±(2**53 - 1) become
    strings, as ``JSON.parse`` would round them (seed 1123118605902879207 would read
    1123118605902879200)."""
    return json.dumps(_exact_for_js(message))


def _to_browser(opcode, data):
    """The browser message for one upstream frame, or None to drop it."""
    if opcode == websocket.ABNF.OPCODE_BINARY:
        return {"type": "result", "result": _data_uris(msgpack.unpackb(data, raw=False))}
    message = json.loads(data)
    if message.get("type") == "x-fal-message":
        return {"type": "timings", "timing": message.get("timing")}
    if message.get("type") == "x-fal-error" or message.get("status") == "error":
        return {"type": "error", "error": message.get("error"), "reason": message.get("reason")}
    return {"type": "result", "result": message}


def pump(browser, upstream, validate, stop=None, admit=None, idle_seconds=None):
    """Move frames both ways until either side closes; returns when both loops ended.

    ``validate(dict) -> dict`` raises ``ValidationError`` for a bad input, which goes back to
    the browser as ``{"type": "invalid", "errors": {...}}`` and is not sent upstream.
    ``admit()``, called for each browser message before anything else, returns None to let
    it through or a message for the browser instead (a rate limit's refusal, say).
    """
    stop = stop or threading.Event()
    lock = threading.Lock()
    state = {"busy": False, "pending": None}

    def send_upstream(input):
        upstream.send_binary(msgpack.packb(input, use_bin_type=True))

    def from_upstream():
        try:
            while not stop.is_set():
                opcode, data = upstream.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                message = _to_browser(opcode, data)
                if message is None:
                    continue
                browser.send(browser_json(message))
                if message["type"] in ("result", "error"):
                    with lock:
                        pending, state["pending"] = state["pending"], None
                        state["busy"] = pending is not None
                    if pending is not None:
                        send_upstream(pending)
        except Exception as exc:  # either side went away; the other loop sees stop
            log.debug("live: upstream loop ended (%s)", type(exc).__name__)
        finally:
            stop.set()

    reader = threading.Thread(target=from_upstream, daemon=True, name="live-upstream")
    reader.start()
    last_input = time.monotonic()
    try:
        while not stop.is_set():
            raw = browser.receive(timeout=RECEIVE_POLL)
            if raw is None:
                if idle_seconds and time.monotonic() - last_input > idle_seconds:
                    # An open tab nobody types in must not hold a server thread forever.
                    browser.send(browser_json({"type": "error", "error": "TIMEOUT",
                                               "reason": "Closed after a while without input."}))
                    break
                continue
            last_input = time.monotonic()
            refusal = admit() if admit is not None else None
            if refusal is not None:
                browser.send(browser_json(refusal))
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                browser.send(browser_json({"type": "invalid",
                                           "errors": {"_schema": ["Send JSON objects"]}}))
                continue
            try:
                input = validate(data if isinstance(data, dict) else {})
            except ValidationError as exc:
                from falweb.schemas import form_errors

                browser.send(browser_json({"type": "invalid",
                                           "errors": form_errors(exc.messages)}))
                continue
            with lock:
                if state["busy"]:
                    state["pending"] = input  # keep only the newest input
                    continue
                state["busy"] = True
            send_upstream(input)
    except (OSError, ConnectionError, websocket.WebSocketException):
        pass
    except Exception as exc:  # simple-websocket's ConnectionClosed and the like
        if "Closed" not in type(exc).__name__:
            raise
    finally:
        stop.set()
        try:
            upstream.close()
        except (OSError, websocket.WebSocketException):
            pass
        reader.join(timeout=5)


class InProcessUpstream:
    """The embedded runtime's realtime endpoint as the pump's upstream socket, without a
    socket: frames go straight to a :class:`~falweb.local.realtime.RealtimeSession`, so a
    live session holds no second server thread (DESIGN §10). The pump's upstream reader
    thread runs the inputs, in :meth:`recv_data`."""

    def __init__(self, session):
        self._session = session
        self._inputs = queue.Queue()
        self._answers = []
        self._closed = threading.Event()

    def send_binary(self, frame):
        self._inputs.put(frame)

    def recv_data(self):
        while not self._answers:
            frame = self._inputs.get()
            if frame is None or self._closed.is_set():
                return websocket.ABNF.OPCODE_CLOSE, b""
            self._answers = list(self._session.run(frame, self._closed.is_set))
        answer = self._answers.pop(0)
        if isinstance(answer, bytes):
            return websocket.ABNF.OPCODE_BINARY, answer
        return websocket.ABNF.OPCODE_TEXT, answer.encode()

    def settimeout(self, timeout):
        pass

    def close(self):
        self._closed.set()
        self._inputs.put(None)


def _open_upstream(endpoint):
    runtime = backend.embedded_runtime()
    if runtime is not None:
        from falweb.local.realtime import RealtimeSession

        return InProcessUpstream(RealtimeSession(runtime, endpoint, backend.local_base()))
    return _open_socket(endpoint.endpoint_id)


def _open_socket(endpoint_id):
    hosts = backend.hosts()
    with backend.client(on=hosts) as client:
        token = client.realtime.get_temporary_auth_token(endpoint_id)
    url = hosts.realtime(f"/{endpoint_id}/realtime") + "?" + urlencode(
        {"fal_jwt_token": token, "max_buffering": 1})
    return websocket.create_connection(url, timeout=current_app.config["FALWEB_HTTP_TIMEOUT"])


@sock.route("/<path:endpoint_id>/ws", bp=bp)
def socket(ws, endpoint_id):
    """Bridge this browser socket to the endpoint's upstream realtime socket."""
    from falweb.schemas import get_endpoint

    endpoint = get_endpoint(endpoint_id)
    if endpoint is None or not endpoint.realtime:
        ws.send(browser_json({"type": "error", "error": "NOT_FOUND",
                              "reason": f"No live mode for {endpoint_id!r}"}))
        return
    sessions = current_app.extensions["falweb_live"]["sessions"]
    if not sessions.acquire(blocking=False):
        ws.send(browser_json({"type": "error", "error": "BUSY",
                              "reason": "Too many live sessions right now: try again soon."}))
        return
    try:
        _bridge(ws, endpoint)
    finally:
        sessions.release()


def _bridge(ws, endpoint):
    from falweb.schemas import load_input

    try:
        upstream = _open_upstream(endpoint)
    except Exception as exc:  # never echo details that could carry credentials
        log.warning("live: cannot reach the realtime upstream (%s)", type(exc).__name__)
        ws.send(browser_json({"type": "error", "error": "UPSTREAM_UNAVAILABLE",
                              "reason": "The realtime backend cannot be reached right now."}))
        return
    upstream.settimeout(None)
    who = limits.caller()

    def admit():
        # Each input counts, valid or not; a refused one is dropped and the socket stays open.
        refusal = limits.hit("live_frames", who=who)
        return limits.live_message(refusal) if refusal is not None else None

    # The API path (strict types): live.js sends numbers as numbers (a seed as the digits
    # typed, which Python's json reads exactly however large).
    pump(ws, upstream, lambda data: load_input(endpoint, data), admit=admit,
         idle_seconds=current_app.config["FALWEB_LIVE_IDLE_SECONDS"])
