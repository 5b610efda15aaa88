"""A realtime session's rules without its socket (fal-protocol §8).

:class:`RealtimeSession` turns one incoming frame into the frames fal answers with: the
output as a binary msgpack frame and a ``timings`` text frame, or one ``x-fal-error`` text
frame. The websocket route (:mod:`falweb.local.realtime_api`) and the app's live bridge,
which calls an embedded runtime in process, both drive it.
"""

import json
import time

import msgpack
from marshmallow import ValidationError

from falweb.local.http import json_problem


def error_frame(error, reason):
    """fal's error text frame."""
    return json.dumps({"type": "x-fal-error", "error": error, "reason": reason})


def _decode(frame):
    if isinstance(frame, bytes | bytearray):
        return msgpack.unpackb(frame, raw=False)
    return json.loads(frame)


class RealtimeSession:
    """Inputs of one connection to ``endpoint`` on ``runtime``; file URLs under ``base_url``."""

    def __init__(self, runtime, endpoint, base_url):
        self.runtime = runtime
        self.endpoint = endpoint
        self.base_url = base_url

    def run(self, frame, cancelled=lambda: False):
        """The frames (``bytes`` binary, ``str`` text) that answer input ``frame``."""
        from falweb.schemas import fal_detail
        from falweb.schemas import load_input

        try:
            data = _decode(frame)
            problem = json_problem(data)
            if problem is not None:
                loc, msg = problem
                return [error_frame("VALIDATION_ERROR", json.dumps(
                    [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}]))]
            input = load_input(self.endpoint, data if isinstance(data, dict) else {"": data})
        except ValidationError as exc:
            return [error_frame("VALIDATION_ERROR", json.dumps(fal_detail(exc.messages)))]
        except (ValueError, RecursionError, msgpack.ExtraData, msgpack.FormatError,
                msgpack.StackError):
            return [error_frame("INVALID_INPUT",
                                "Frames must be msgpack (binary) or JSON (text) objects")]
        started = time.perf_counter()
        result, status, error, _ = self.runtime.execute(
            self.endpoint, input, self.base_url, lambda *a: None, lambda *a: cancelled())
        if status >= 400:
            return [error_frame("INTERNAL_ERROR" if status >= 500 else "REQUEST_ERROR",
                                error or json.dumps(result))]
        return [msgpack.packb(result, use_bin_type=True),
                json.dumps({"type": "x-fal-message", "action": "timings",
                            "timing": round(time.perf_counter() - started, 4)})]
