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

import msgpack
from flask import Blueprint
from flask import request
from flask_sock import Sock
from marshmallow import ValidationError

from falweb.local.http import app_alias
from falweb.local.http import base_url
from falweb.local.http import json_problem
from falweb.local.http import runtime

bp = Blueprint("realtime", __name__, url_prefix="/run")
sock = Sock()

IDLE_SECONDS = 60.0


def _send_json(ws, body):
    ws.send(json.dumps(body))


def _error(ws, error, reason):
    _send_json(ws, {"type": "x-fal-error", "error": error, "reason": reason})


def _decode(frame):
    if isinstance(frame, bytes | bytearray):
        return msgpack.unpackb(frame, raw=False)
    return json.loads(frame)


@sock.route("/<path:endpoint_id>/realtime", bp=bp)
def realtime(ws, endpoint_id):
    from falweb.local.tokens import TokenError
    from falweb.schemas import fal_detail
    from falweb.schemas import get_endpoint
    from falweb.schemas import load_input

    rt = runtime()
    # The endpoint first: an id that is not one has no alias to check a token against.
    endpoint = get_endpoint(endpoint_id)
    if endpoint is None or not endpoint.realtime:
        _error(ws, "NOT_FOUND", f"'{endpoint_id}' has no realtime endpoint here")
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
    root = base_url()
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
                    _error(ws, "TIMEOUT", "no inputs, reconnect when needed!")
                    break
                continue
            last_input = time.monotonic()
            try:
                data = _decode(frame)
                problem = json_problem(data)
                if problem is not None:
                    loc, msg = problem
                    _error(ws, "VALIDATION_ERROR", json.dumps(
                        [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}]))
                    continue
                input = load_input(endpoint, data if isinstance(data, dict) else {"": data})
            except ValidationError as exc:
                _error(ws, "VALIDATION_ERROR", json.dumps(fal_detail(exc.messages)))
                continue
            except (ValueError, RecursionError, msgpack.ExtraData, msgpack.FormatError,
                    msgpack.StackError):
                _error(ws, "INVALID_INPUT",
                       "Frames must be msgpack (binary) or JSON (text) objects")
                continue
            started = time.perf_counter()
            result, status, error, _ = rt.execute(endpoint, input, root, lambda *a: None,
                                                  lambda *a: closed.is_set())
            if status >= 400:
                _error(ws, "INTERNAL_ERROR" if status >= 500 else "REQUEST_ERROR",
                       error or json.dumps(result))
                continue
            ws.send(msgpack.packb(result, use_bin_type=True))
            _send_json(ws, {"type": "x-fal-message", "action": "timings",
                            "timing": round(time.perf_counter() - started, 4)})
    finally:
        closed.set()
