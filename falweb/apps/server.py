"""The WSGI app that serves a native :class:`falweb.apps.App` the way fal's SDK serves a fal
app: the same routes, ``GET /health``, ``/openapi.json``, FastAPI-shaped 422 answers, 404
``Path /x not found``, 499 for a cancelled request, msgpack realtime frames. The runtime
talks to it exactly as to a fal app.
"""

import atexit
import inspect
import json
import time
import traceback
import typing

import msgpack
from flask import Flask
from flask import Response
from flask import request
from flask_sock import Sock
from pydantic import BaseModel
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema

from falweb.apps import RequestCancelledException
from falweb.apps import StreamingResponse
from falweb.apps import context

JSON = "application/json"


def _json(body, status=200, headers=None):
    return Response(json.dumps(body, default=str), status=status, mimetype=JSON,
                    headers=headers)


def _types(method):
    hints = typing.get_type_hints(method)
    returns = hints.pop("return", None)
    params = [p for p in inspect.signature(method).parameters if p in hints]
    return (hints[params[0]] if params else None), returns


def _is_model(kind):
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _errors(exc, prefix=("body",)):
    # FastAPI's shape: pydantic's errors with "body" in front of each location.
    return [{**{k: v for k, v in error.items() if k != "url"},
             "loc": [*prefix, *error["loc"]]} for error in exc.errors(include_url=False)]


def _output(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _request_context(path):
    return context.RequestContext(request_id=request.headers.get("x-fal-request-id"),
                                  endpoint=request.headers.get("x-fal-endpoint") or path,
                                  headers=dict(request.headers))


def openapi(cls):
    """fal-style OpenAPI document of the app's routes (components from the pydantic models)."""
    models, paths, order = [], {}, []
    for signature, name in cls.routes().items():
        input_type, output_type = _types(getattr(cls, name))
        for kind in (input_type, output_type):
            if _is_model(kind):
                models.append((kind, "validation" if kind is input_type else "serialization"))
        order.append(signature.path)
        operation = {"operationId": name, "responses": {"200": {"description": "OK"}}}
        if _is_model(input_type):
            operation["requestBody"] = {"required": True, "content": {JSON: {"schema": {
                "$ref": f"#/components/schemas/{input_type.__name__}"}}}}
        if _is_model(output_type):
            operation["responses"]["200"]["content"] = {JSON: {"schema": {
                "$ref": f"#/components/schemas/{output_type.__name__}"}}}
        if signature.realtime:
            operation["x-fal-protocol"] = "realtime"
            paths[signature.path] = {"get": operation}
        else:
            paths[signature.path] = {"post": operation}
    _, schemas = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return {"openapi": "3.1.0", "info": {"title": cls.__name__, "version": "0.1.0"},
            "paths": paths, "components": {"schemas": schemas.get("$defs", {})},
            "x-fal-order-paths": order}


def build_wsgi(cls):
    """Set ``cls`` up (``setup`` runs here, once) and return the WSGI app serving it."""
    instance = cls()
    instance.setup()
    atexit.register(instance.teardown)
    app = Flask(f"falweb.apps.{cls.__name__}")
    sock = Sock(app)
    document = openapi(cls)

    @app.get("/health")
    def health():
        return _json(instance.health())

    @app.get("/openapi.json")
    def openapi_json():
        return _json(document)

    @app.errorhandler(404)
    def not_found(_):
        return _json({"detail": f"Path {request.path} not found"}, 404,
                     {"x-fal-billable-units": "0"})

    @app.errorhandler(405)
    def not_allowed(_):
        return _json({"detail": "Method Not Allowed"}, 405)

    for signature, name in cls.routes().items():
        method = getattr(instance, name)
        input_type, _ = _types(getattr(cls, name))
        if signature.realtime:
            sock.route(signature.path, endpoint=f"rt_{name}")(_realtime(method, input_type))
        else:
            app.add_url_rule(signature.path, f"ep_{name}", _endpoint(method, input_type),
                             methods=["POST"])
    return app


def _validated(input_type, data):
    if _is_model(input_type):
        return input_type.model_validate(data)
    return data


def _endpoint(method, input_type):
    def view():
        raw = request.get_data()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return _json({"detail": [{"type": "json_invalid", "loc": ["body", 0],
                                      "msg": "JSON decode error", "input": {},
                                      "ctx": {"error": str(exc)}}]}, 422,
                         {"x-fal-billable-units": "0"})
        token = context.enter(_request_context(request.path))
        try:
            try:
                input = _validated(input_type, data)
            except ValidationError as exc:
                return _json({"detail": _errors(exc)}, 422, {"x-fal-billable-units": "0"})
            try:
                value = method(input)
            except RequestCancelledException as exc:
                return _json({"detail": str(exc) or "Request was cancelled"}, 499)
            except Exception:
                traceback.print_exc()
                return _json({"detail": "Internal Server Error"}, 500)
            if isinstance(value, StreamingResponse):
                return Response(_stream(value.content), status=value.status_code,
                                mimetype=value.media_type, headers=value.headers)
            return _json(_output(value))
        finally:
            context.leave(token)

    return view


def _stream(content):
    for chunk in content:
        yield chunk.encode() if isinstance(chunk, str) else chunk


def _error_frame(error, reason):
    return json.dumps({"type": "x-fal-error", "error": error, "reason": reason})


def _realtime(method, input_type):
    def view(ws):
        request_context = _request_context(request.path)
        while True:
            frame = ws.receive()
            if frame is None:
                continue
            token = context.enter(request_context)
            started = time.perf_counter()
            try:
                data = msgpack.unpackb(frame, raw=False) if isinstance(frame, bytes) \
                    else json.loads(frame)
                value = method(_validated(input_type, data))
            except ValidationError as exc:
                ws.send(_error_frame("VALIDATION_ERROR", json.dumps(_errors(exc, ()),
                                                                    default=str)))
                continue
            except (ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
                ws.send(_error_frame("INVALID_INPUT", str(exc)))
                continue
            except Exception as exc:
                traceback.print_exc()
                ws.send(_error_frame("INTERNAL_ERROR", str(exc)))
                continue
            finally:
                context.leave(token)
            output = value.model_dump() if isinstance(value, BaseModel) else value
            ws.send(msgpack.packb(output, use_bin_type=True))
            ws.send(json.dumps({"type": "x-fal-message", "action": "timings",
                                "timing": round(time.perf_counter() - started, 4)}))

    return view
