"""The runtime's HTTP layer for hosted apps: queue submit, direct runs, streams, realtime.

One ``before_request`` hook looks at ``/queue/<owner>/<app>/…`` and ``/run/<owner>/<app>/…``
and takes the request when ``<owner>/<app>`` is a hosted app; anything else (built-in
endpoints) goes on to the runtime's own routes. Status, status stream, result and cancel
(``/queue/<owner>/<app>/requests/…``) need nothing app-specific: the queue's own routes
answer them.
"""

import contextlib
import json
import time
import uuid

from flask import Response
from flask import jsonify
from flask import request
from flask import stream_with_context

from falweb.local import errors
from falweb.local.apps.calls import ENDPOINT_HEADER
from falweb.local.apps.calls import NO_RETRY_HEADER
from falweb.local.apps.calls import REQUEST_ID_HEADER
from falweb.local.apps.calls import AppCall
from falweb.local.apps.calls import AppGone
from falweb.local.apps.calls import AppNotListening
from falweb.local.apps.calls import local_files_as_data_uris
from falweb.local.apps.jobs import MAX_503_RETRIES
from falweb.local.apps.jobs import MAX_REFUSED
from falweb.local.apps.jobs import RETRY_503_DELAY
from falweb.local.apps.supervisor import AppUnavailable
from falweb.local.http import base_url
from falweb.local.http import json_body
from falweb.local.http import read_body
from falweb.local.http import runtime
from falweb.local.http import verify_token

CHUNK = 64 * 1024
# Headers of the app's answer that reach the caller (the rest are hop-by-hop or the app's).
PASSED_HEADERS = ("content-type", "x-fal-billable-units", "cache-control")


def init_app(app, apps):
    """Route ``apps``' endpoint ids on the runtime's Flask ``app`` (after its host check)."""

    @app.get("/apps")
    def hosted_apps_state():
        """``{"apps": [...]}``: each hosted app's id, state and error (as on /healthz)."""
        return jsonify({"apps": apps.state()})

    @app.get("/apps/<path:app_id>/openapi.json")
    def hosted_app_openapi(app_id):
        """The app's own OpenAPI document (its catalog entry); 404 unknown or not running."""
        document = apps.openapi_documents().get(app_id.strip("/"))
        if document is None:
            raise errors.detail(404, f"No running app {app_id.strip('/')!r} here")
        return jsonify(document)

    @app.before_request
    def hosted_app_routes():
        parts = request.path.strip("/").split("/")
        if len(parts) < 3 or parts[0] not in ("queue", "run"):
            return None
        found = apps.find("/".join(parts[1:]))
        if found is None:
            return None
        hosted, path = found
        endpoint_id = "/".join(parts[1:])
        if parts[0] == "queue":
            if len(parts) > 3 and parts[3] == "requests":
                return None
            if request.method != "POST":
                raise errors.detail(405, "Submit with POST")
            return submit(endpoint_id)
        if request.method == "OPTIONS":
            return None
        if request.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            from falweb.local.apps.realtime import relay

            return relay(apps, hosted, path, endpoint_id)
        verify_token(endpoint_id)
        return run(apps, hosted, path, endpoint_id)


def submit(endpoint_id):
    """As the queue's own submit, with the input checked by the app when it runs."""
    from falweb.local.queue_api import enqueue

    input = json_body()
    if not isinstance(input, dict):
        raise errors.body_error("Input must be a JSON object", "type_error.dict")
    return enqueue(endpoint_id, input)


def _forwarded_body():
    """The caller's body for the app: JSON with the runtime's file URLs as data URIs."""
    if request.method == "GET":
        return None
    content_type = (request.mimetype or "").lower()
    if content_type in ("", "application/json"):
        data = json_body()
        rt = runtime()
        data = local_files_as_data_uris(data, base_url(), rt.storage, rt.max_fetch_bytes)
        return json.dumps(data).encode()
    from flask import current_app

    return read_body(int(current_app.config["FALWEB_LOCAL_MAX_REQUEST_BYTES"]))


def run(apps, hosted, path, endpoint_id):
    """The app's answer to a direct call, streamed as it comes (SSE passes through);
    503 when the app is not running. A caller that hangs up drops the app's call, which
    is how fal cancels a direct request."""
    body = _forwarded_body()
    request_id = str(uuid.uuid4())
    query = request.query_string.decode("latin-1")
    query = "&".join(p for p in query.split("&") if p and not p.startswith("fal_jwt_token="))
    target = path + (f"?{query}" if query else "")
    content_type = request.headers.get("content-type") or "application/json"
    if (request.mimetype or "").lower() in ("", "application/json"):
        content_type = "application/json"  # the body was re-encoded as JSON
    headers = {"content-type": content_type, REQUEST_ID_HEADER: request_id,
               ENDPOINT_HEADER: endpoint_id, "accept": request.headers.get("accept", "*/*")}
    # Held until the answer's last byte is sent (or the caller hangs up), not only until
    # this view returns: the app works while its answer streams.
    held = contextlib.ExitStack()
    held.enter_context(apps.tracking(request_id, base_url()))
    held.enter_context(apps.slot(hosted))
    retries = 0
    try:
        while True:
            try:
                port = hosted.wait_ready(apps.startup_seconds)
            except AppUnavailable as exc:
                raise errors.detail(503, str(exc)) from None
            call = AppCall(port, request.method, target, body, {**headers, **hosted.headers()})
            try:
                response = call.send()
            except AppNotListening:
                # Died a moment ago; the supervisor brings it back (the call never ran).
                hosted.suspect()
                retries += 1
                if retries > MAX_REFUSED:
                    raise errors.detail(503, f"app {hosted.spec.id} refuses connections"
                                        ) from None
                time.sleep(0.2)
                continue
            except AppGone as exc:
                hosted.suspect()
                raise errors.detail(503, f"app {hosted.spec.id} stopped: {exc}") from None
            if (response.status == 503 and retries < MAX_503_RETRIES
                    and not response.getheader(NO_RETRY_HEADER)):
                retries += 1
                call.close()
                time.sleep(RETRY_503_DELAY * retries)
                continue
            break
    except BaseException:
        held.close()
        raise

    def chunks():
        try:
            while True:
                try:
                    chunk = response.read1(CHUNK)
                except (OSError, ValueError):
                    return
                if not chunk:
                    return
                yield chunk
        finally:
            call.abort()
            call.close()
            held.close()

    passed = {k: v for k, v in response.getheaders() if k.lower() in PASSED_HEADERS}
    passed[REQUEST_ID_HEADER] = request_id
    if (response.getheader("content-type") or "").startswith("text/event-stream"):
        passed["X-Accel-Buffering"] = "no"
    return Response(stream_with_context(chunks()), status=response.status, headers=passed)
