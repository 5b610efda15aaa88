"""Queue API (fal-protocol §4): submit, status, status stream, result, cancel.

URLs in answers are built from the base URL the caller used, with the app base (owner/alias,
no sub-path), so they equal what fal's JS client builds and fal's Python client follows.
"""

import json
import time

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask import stream_with_context

from falweb.local import errors
from falweb.local.delivery import WebhookRefused
from falweb.local.http import app_base
from falweb.local.http import base_url
from falweb.local.http import check_input_files
from falweb.local.http import find_endpoint
from falweb.local.http import json_body
from falweb.local.http import runtime
from falweb.local.http import validated_input
from falweb.local.http import verify_token
from falweb.local.http import wants_logs
from falweb.local.queue import COMPLETED
from falweb.local.queue import IN_QUEUE
from falweb.local.queue import PRIORITIES
from falweb.local.queue import START_TIMEOUT_ERROR_TYPE

bp = Blueprint("queue", __name__, url_prefix="/queue")

KEEPALIVE = 10.0
# x-fal-* request headers the queue understands and keeps with the job.
KEPT_HEADERS = ("x-fal-queue-priority", "x-fal-runner-hint", "x-fal-request-timeout",
                "x-fal-object-lifecycle-preference", "x-fal-store-io", "x-fal-disable-fallbacks")


def urls(job):
    root = f"{base_url()}/queue/{job.app_base}/requests/{job.request_id}"
    return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}


def status_body(job, with_logs, logs=None):
    body = {"status": job.status, "request_id": job.request_id, **urls(job)}
    if job.status == IN_QUEUE:
        body["queue_position"] = runtime().queue.queue_position(job)
        return body
    if with_logs:
        body["logs"] = logs if logs is not None else runtime().queue.logs(job.request_id)
    else:
        body["logs"] = None
    if job.status == COMPLETED:
        body["metrics"] = job.metrics or {}
        if job.error is not None:
            body["error"] = job.error
            body["error_type"] = job.error_type
    return body


def find_job(base, request_id):
    job = runtime().queue.get(request_id)
    if job is None or job.app_base != app_base(base):
        raise errors.detail(404, f"Request '{request_id}' not found")
    return job


@bp.post("/<path:endpoint_id>")
def submit(endpoint_id):
    """Queue a request: 200 ``{status, request_id, response_url, status_url, cancel_url,
    queue_position}``; 404 unknown endpoint; 422 invalid input, or a webhook that is not an
    http(s) URL or names a private or local address (not allowed by the runtime)."""
    endpoint = find_endpoint(endpoint_id)
    input = validated_input(endpoint, json_body())
    check_input_files(endpoint, input)
    return enqueue(endpoint_id, input)


def enqueue(endpoint_id, input):
    """Queue ``input`` for ``endpoint_id`` with the request's webhook, priority, kept headers
    and start timeout; the submit answer (the runtime's engines and hosted apps alike)."""
    rt = runtime()
    webhook = request.args.get("fal_webhook")
    trusted = False
    if webhook is not None:
        try:
            trusted = rt.webhooks.check(webhook)
        except WebhookRefused as exc:
            raise errors.validation([{"loc": ["query", "fal_webhook"], "msg": str(exc),
                                      "type": "value_error.url"}]) from None
    priority = request.headers.get("x-fal-queue-priority", "normal").strip().lower()
    if priority not in PRIORITIES:
        raise errors.validation([{"loc": ["header", "x-fal-queue-priority"],
                                  "msg": "must be 'normal' or 'low'", "type": "value_error"}])
    headers = {k: request.headers[k] for k in KEPT_HEADERS if k in request.headers}
    job = rt.queue.submit(endpoint_id.strip("/"), app_base(endpoint_id), input, base_url(),
                          priority=priority, webhook_url=webhook, webhook_trusted=trusted,
                          headers=headers, start_timeout=_start_timeout())
    rt.wake()
    body = {"status": IN_QUEUE, "request_id": job.request_id, **urls(job),
            "queue_position": rt.queue.queue_position(job)}
    if webhook:
        body["gateway_request_id"] = job.request_id
    return jsonify(body), 200, {"x-fal-request-id": job.request_id}


def _start_timeout():
    raw = request.headers.get("x-fal-request-timeout")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise errors.validation([{"loc": ["header", "x-fal-request-timeout"],
                                  "msg": "must be a positive number of seconds",
                                  "type": "value_error"}])
    return seconds


@bp.get("/<path:base>/requests/<request_id>/status")
def status(base, request_id):
    """202 while IN_QUEUE/IN_PROGRESS, 200 when COMPLETED (fal-protocol §4.2); 404 unknown."""
    job = find_job(base, request_id)
    code = 200 if job.status == COMPLETED else 202
    return jsonify(status_body(job, wants_logs())), code


@bp.get("/<path:base>/requests/<request_id>/status/stream")
def status_stream(base, request_id):
    """SSE of status objects with incremental logs; closes after COMPLETED."""
    verify_token(base)
    find_job(base, request_id)
    with_logs = wants_logs()
    rt = runtime()

    def events():
        with rt.changes.watch(request_id) as watch:
            yield from _events(watch)

    def _events(watch):
        seen_logs = 0
        last = None
        last_sent = time.monotonic()
        while True:
            current = rt.queue.get(request_id)
            new_logs = rt.queue.logs(request_id, seen_logs) if with_logs else None
            position = rt.queue.queue_position(current) if current.status == IN_QUEUE else None
            key = (current.status, position)
            if key != last or new_logs or current.status == COMPLETED:
                body = status_body(current, with_logs, new_logs)
                seen_logs += len(new_logs or ())
                last = key
                last_sent = time.monotonic()
                yield f"data: {json.dumps(body)}\n\n"
                if current.status == COMPLETED:
                    return
            elif time.monotonic() - last_sent > KEEPALIVE:
                last_sent = time.monotonic()
                yield ": keep-alive\n\n"
            # Until the job changes (PostgreSQL's NOTIFY), or the next look (SQLite).
            watch.wait(any_job=current.status == IN_QUEUE)

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "x-fal-request-id": request_id,
                             "X-Accel-Buffering": "no"})


@bp.get("/<path:base>/requests/<request_id>")
def result(base, request_id):
    """The stored output (or the error it failed with) and ``x-fal-request-id``;
    400 while not COMPLETED; 404 unknown."""
    job = find_job(base, request_id)
    if job.status != COMPLETED:
        raise errors.FalHTTPError(
            400, {"detail": "Request is still in progress", "status": job.status})
    headers = {"x-fal-request-id": job.request_id}
    if job.error_type == START_TIMEOUT_ERROR_TYPE:
        # The caller's own deadline: fal's clients must not retry this 504.
        headers |= {"x-fal-request-timeout-type": "user", "x-fal-error-type": job.error_type}
    return jsonify(job.result), job.result_status or 200, headers


@bp.put("/<path:base>/requests/<request_id>/cancel")
def cancel(base, request_id):
    """202 CANCELLATION_REQUESTED (queued: removed; running: flagged), 400 ALREADY_COMPLETED,
    404 NOT_FOUND."""
    job = runtime().queue.get(request_id)
    if job is None or job.app_base != app_base(base):
        return jsonify({"status": "NOT_FOUND"}), 404
    answer = runtime().queue.cancel(request_id)
    code = {"CANCELLATION_REQUESTED": 202, "ALREADY_COMPLETED": 400, "NOT_FOUND": 404}[answer]
    return jsonify({"status": answer}), code

