"""Realtime for hosted apps: the caller's websocket relayed to the app's, frame by frame.

The runtime checks the token (as for its own realtime endpoints) and opens the app's
websocket route with the app's secret; then frames pass through unchanged both ways —
binary msgpack inputs and outputs, JSON text control frames (``x-fal-error``, timings) —
so the app speaks fal's realtime protocol itself. Either side closing closes the other.
"""

import json
import threading

import websocket
from flask import Response
from simple_websocket import ConnectionClosed
from simple_websocket import Server

from falweb.local.apps.calls import ENDPOINT_HEADER
from falweb.local.apps.calls import REQUEST_ID_HEADER
from falweb.local.apps.supervisor import AppUnavailable

RECEIVE_POLL = 1.0


class _Handled(Response):
    """What a view answers once it served a websocket itself (as flask-sock does)."""

    def __init__(self, ws):
        super().__init__()
        self._ws = ws

    def __call__(self, environ, start_response):
        if self._ws.mode == "gunicorn":
            raise StopIteration()
        return super().__call__(environ, start_response)


def relay(apps, hosted, path, endpoint_id):
    import uuid

    from flask import request

    from falweb.local.http import app_alias
    from falweb.local.http import runtime
    from falweb.local.tokens import TokenError

    ws = Server(request.environ)
    token = request.args.get("fal_jwt_token")
    if token is not None:
        try:
            runtime().tokens.verify(token, app_alias(endpoint_id))
        except TokenError:
            # fal's answer to a bad token, as the runtime's own realtime gives it.
            ws.send(json.dumps({"status": "error", "error": "Unauthorized"}))
            ws.close(reason=1008, message="Unauthorized")
            return _Handled(ws)
    request_id = str(uuid.uuid4())
    try:
        port = hosted.wait_ready(apps.startup_seconds)
        upstream = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=30, enable_multithread=True,
            header={**hosted.headers(), REQUEST_ID_HEADER: request_id,
                    ENDPOINT_HEADER: endpoint_id})
    except (AppUnavailable, OSError, websocket.WebSocketException) as exc:
        ws.send(json.dumps({"type": "x-fal-error", "error": "SERVICE_UNAVAILABLE",
                            "reason": f"app {hosted.spec.id}: {exc}"}))
        ws.close(reason=1011, message="App unavailable")
        return _Handled(ws)
    upstream.settimeout(None)
    closed = threading.Event()

    def from_app():
        try:
            while not closed.is_set():
                opcode, data = upstream.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    ws.send(data.decode("utf-8", "replace"))
                else:
                    ws.send(bytes(data))
        except (OSError, websocket.WebSocketException, ConnectionClosed):
            pass
        finally:
            closed.set()

    reader = threading.Thread(target=from_app, daemon=True, name=f"relay-{request_id}")
    reader.start()
    try:
        while not closed.is_set():
            frame = ws.receive(timeout=RECEIVE_POLL)
            if frame is None:
                continue
            if isinstance(frame, str):
                upstream.send(frame)
            else:
                upstream.send_binary(bytes(frame))
    except (OSError, websocket.WebSocketException, ConnectionClosed):
        pass
    finally:
        closed.set()
        try:
            upstream.close()
        except (OSError, websocket.WebSocketException):
            pass
        reader.join(timeout=5)
        try:
            ws.close()
        except Exception:  # noqa: BLE001 - already closed by the caller
            pass
    return _Handled(ws)

