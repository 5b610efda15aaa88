"""Realtime (fal-protocol §8): ``ws(s)://…/run/<id>/realtime?fal_jwt_token=…``.

Inputs arrive as binary msgpack frames (JSON text frames are accepted too); each output goes
back as a binary msgpack frame followed by a ``{"type": "x-fal-message", "action":
"timings"}`` text frame. Errors are ``{"type": "x-fal-error", "error", "reason"}`` text frames,
a bad token is ``{"status": "error", "error": "Unauthorized"}``. While an input runs, only the
latest new input is kept (``max_buffering`` frames at most are read ahead, default 1), as
fal's gateway drops stale frames. An idle session gets fal's TIMEOUT message and is closed.
"""

import json
import threading
import time

from flask import Blueprint
from flask import request
from flask_sock import Sock

from falweb.local.http import app_alias
from falweb.local.http import base_url
from falweb.local.http import runtime
from falweb.local.realtime import RealtimeSession
from falweb.local.realtime import error_frame

bp = Blueprint("realtime", __name__, url_prefix="/run")
sock = Sock()

IDLE_SECONDS = 60.0


def _send_json(ws, body):
    ws.send(json.dumps(body))


@sock.route("/<path:endpoint_id>/realtime", bp=bp)
def realtime(ws, endpoint_id):
    from falweb.local.tokens import TokenError
    from falweb.schemas import get_endpoint

    rt = runtime()
    # The endpoint first: an id that is not one has no alias to check a token against.
    endpoint = get_endpoint(endpoint_id)
    if endpoint is None or not endpoint.realtime:
        ws.send(error_frame("NOT_FOUND", f"'{endpoint_id}' has no realtime endpoint here"))
        ws.close(reason=1008, message="Not found")
        return
    token = request.args.get("fal_jwt_token")
    if token is not None:
        try:
            rt.tokens.verify(token, app_alias(endpoint_id))
        except TokenError:
            _send_json(ws, {"status": "error", "error": "Unauthorized"})
            ws.close(reason=1008, message="Unauthorized")
            return
    session = RealtimeSession(rt, endpoint, base_url())
    latest = []
    arrived = threading.Condition()
    closed = threading.Event()

    def read():
        # Keeps only the newest input: a client typing fast should see its last prompt.
        try:
            while not closed.is_set():
                frame = ws.receive(timeout=1)
                if frame is None:
                    continue
                with arrived:
                    latest[:] = [frame]
                    arrived.notify()
        except Exception:  # the socket closed under us
            pass
        finally:
            closed.set()
            with arrived:
                arrived.notify()

    threading.Thread(target=read, daemon=True, name="realtime-reader").start()
    last_input = time.monotonic()
    try:
        while not closed.is_set():
            with arrived:
                if not latest:
                    arrived.wait(timeout=0.5)
                frame = latest.pop() if latest else None
            if frame is None:
                if time.monotonic() - last_input > IDLE_SECONDS:
                    ws.send(error_frame("TIMEOUT", "no inputs, reconnect when needed!"))
                    break
                continue
            last_input = time.monotonic()
            for answer in session.run(frame, closed.is_set):
                ws.send(answer)
    finally:
        closed.set()
