"""Direct calls (fal-protocol §6, §7): ``POST /run/<id>`` and the SSE ``/run/<id>/stream``.

No queue: the request's own thread runs the engine, as fal.run holds the connection. A
stream sends a progress event per step and the output as its last event; a caller that
hangs up cancels the run, as fal does for direct connections.
"""

import json
import queue
import threading
import uuid

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask import stream_with_context

from falweb.local.http import base_url
from falweb.local.http import check_input_files
from falweb.local.http import check_json
from falweb.local.http import find_endpoint
from falweb.local.http import json_body
from falweb.local.http import runtime
from falweb.local.http import validated_input
from falweb.local.http import verify_token

bp = Blueprint("run", __name__, url_prefix="/run")

STREAM_SUFFIX = "/stream"


def _query_input():
    # GET calls carry the input in the query string (fal-protocol §1.4); values may be JSON.
    data = {}
    for key, value in request.args.items():
        if key == "fal_jwt_token":
            continue
        try:
            data[key] = json.loads(value)
        except (ValueError, RecursionError):
            data[key] = value
    check_json(data)
    return data


@bp.route("/<path:endpoint_id>", methods=["POST", "GET"])
def run(endpoint_id):
    """The output (200, ``x-fal-request-id``), or the stream for ``…/stream`` ids;
    404 unknown endpoint; 422 invalid input; the engine's error status otherwise."""
    stripped = endpoint_id.strip("/")
    if stripped.endswith(STREAM_SUFFIX):
        from falweb.schemas import get_endpoint

        if get_endpoint(stripped) is None:
            return stream(stripped[: -len(STREAM_SUFFIX)])
    verify_token(stripped)
    endpoint = find_endpoint(stripped)
    data = _query_input() if request.method == "GET" else json_body()
    input = validated_input(endpoint, data)
    check_input_files(endpoint, input)
    request_id = str(uuid.uuid4())
    result, status, _, _ = runtime().execute(endpoint, input, base_url(),
                                             lambda *a: None, lambda *a: False)
    return jsonify(result), status, {"x-fal-request-id": request_id}


def stream(endpoint_id):
    verify_token(endpoint_id)
    endpoint = find_endpoint(endpoint_id)
    input = validated_input(endpoint, json_body())
    check_input_files(endpoint, input)
    request_id = str(uuid.uuid4())
    events = queue.Queue()
    hung_up = threading.Event()
    rt = runtime()
    root = base_url()

    def progress(step, total):
        events.put({"partial": True, "progress": round(step / total, 4), "step": step,
                    "total_steps": total})
        return hung_up.is_set()

    def log_line(message, level):
        events.put({"partial": True, "logs": [{"message": message, "level": level,
                                               "source": "USER"}]})

    def work():
        result, status, error, error_type = rt.execute(endpoint, input, root, log_line, progress)
        if status >= 400:
            result = {**result, "error": error, "error_type": error_type, "status_code": status}
        events.put(result)
        events.put(None)

    threading.Thread(target=work, name=f"stream-{request_id}", daemon=True).start()

    def sse():
        try:
            while (event := events.get()) is not None:
                # One write per event: fal's JS client decodes chunks without stream mode.
                yield f"data: {json.dumps(event)}\n\n"
        finally:
            hung_up.set()

    return Response(stream_with_context(sse()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "x-fal-request-id": request_id,
                             "X-Accel-Buffering": "no"})
