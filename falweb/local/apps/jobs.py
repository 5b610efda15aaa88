"""Queue jobs for hosted apps: forward the input, watch for cancel, record the answer.

A job's input goes to the app's route as fal's gateway sends it (``x-fal-request-id``,
``x-fal-endpoint``). While it runs:

- a cancel asked through the queue is forwarded as fal does, ``POST <path>/cancel`` with
  the same request id; an app without that route (404/405) has its call dropped, which is
  how fal cancels a direct call;
- a 503 answer is retried (up to ``MAX_503_RETRIES``) unless the app sent ``x-fal-no-retry``;
- a connection that breaks (the app's process died) waits for the supervisor to bring the
  app back and runs the request again, at most ``MAX_RERUNS`` times; the job completes once
  whatever happens, so its webhook is delivered once.
"""

import json
import threading
import time

from falweb.local.apps.calls import ENDPOINT_HEADER
from falweb.local.apps.calls import NO_RETRY_HEADER
from falweb.local.apps.calls import REQUEST_ID_HEADER
from falweb.local.apps.calls import AppCall
from falweb.local.apps.calls import AppGone
from falweb.local.apps.calls import AppNotListening
from falweb.local.apps.calls import json_of
from falweb.local.apps.calls import local_files_as_data_uris
from falweb.local.apps.supervisor import HEALTHY
from falweb.local.apps.supervisor import AppUnavailable
from falweb.local.queue import CANCELLED_ERROR
from falweb.local.queue import CANCELLED_ERROR_TYPE
from falweb.local.queue import Interrupted

MAX_RERUNS = 2
MAX_503_RETRIES = 10
MAX_REFUSED = 100
RETRY_503_DELAY = 0.5
WATCH_INTERVAL = 0.1
LOG_DRAIN_SECONDS = 2.0
RESTART_NOTICE = 5.0
APP_ERROR_TYPE = "app_error"
UNAVAILABLE_ERROR_TYPE = "app_unavailable"


class _Stopping(Exception):
    pass


def outcome_of(status, body, app_id):
    """(result, status, error, error_type) of an app's answer, fal's way."""
    data = json_of(body)
    if status == 200:
        if data is None:
            detail = f"app {app_id} answered 200 with a body that is not JSON"
            return {"detail": detail}, 500, detail, APP_ERROR_TYPE
        return data, 200, None, None
    if status == 499:
        return {"detail": CANCELLED_ERROR}, 400, CANCELLED_ERROR, CANCELLED_ERROR_TYPE
    if status == 422:
        return (data if isinstance(data, dict) else {"detail": body.decode("utf-8", "replace")},
                422, "Invalid input", "validation_error")
    detail = data.get("detail") if isinstance(data, dict) else None
    if not detail:
        detail = body.decode("utf-8", "replace")[:500] or "no details"
    error = f"app {app_id} answered {status}: {detail}"
    result = data if isinstance(data, dict) else {"detail": error}
    return result, status if status >= 400 else 500, error, APP_ERROR_TYPE


class JobRunner:
    """Runs queue jobs of hosted apps for :class:`~falweb.local.apps.HostedApps`."""

    def __init__(self, apps, runtime):
        self.apps = apps
        self.runtime = runtime

    def execute(self, job, hosted, path, log_line, stop):
        """The job's (result, status, error, error_type); raises the runtime's
        ``Interrupted`` when the runtime stops meanwhile (the job goes back to the queue)."""

        rt = self.runtime
        body = json.dumps(local_files_as_data_uris(
            job.input, job.base_url, rt.storage, rt.max_fetch_bytes)).encode()
        headers = {"content-type": "application/json", REQUEST_ID_HEADER: job.request_id,
                   ENDPOINT_HEADER: job.endpoint_id}
        reruns = 0
        retries = 0
        refused = 0
        with self.apps.tracking(job.request_id, job.base_url, log_line) as answered:
            while True:
                try:
                    port = hosted.wait_ready(self.apps.startup_seconds, stop)
                except AppUnavailable as exc:
                    if stop.is_set():
                        raise Interrupted() from None
                    return {"detail": str(exc)}, 503, str(exc), UNAVAILABLE_ERROR_TYPE
                gone_pid = hosted.pid
                answered.clear()  # an earlier attempt's "done" says nothing of this one
                try:
                    with self.apps.slot(hosted, stop):
                        status, answer_headers, answer = self._call(
                            hosted, port, path, body, headers, job.request_id, stop)
                except _Stopping:
                    raise Interrupted() from None
                except AppNotListening:
                    # The process died a moment ago and the supervisor has not seen it
                    # yet: the request never reached it, so this is no rerun.
                    hosted.suspect()
                    refused += 1
                    if refused > MAX_REFUSED or stop.wait(WATCH_INTERVAL * 2):
                        if stop.is_set():
                            raise Interrupted() from None
                        error = f"app {hosted.spec.id} refuses connections"
                        return {"detail": error}, 503, error, UNAVAILABLE_ERROR_TYPE
                    continue
                except AppGone as exc:
                    if stop.is_set():
                        raise Interrupted() from None
                    if self._cancel_requested(job.request_id):
                        return ({"detail": CANCELLED_ERROR}, 400, CANCELLED_ERROR,
                                CANCELLED_ERROR_TYPE)
                    hosted.suspect()
                    self._await_restart(hosted, gone_pid, stop)
                    reruns += 1
                    if reruns > MAX_RERUNS:
                        error = (f"app {hosted.spec.id} stopped while running the request "
                                 f"{reruns} times ({exc})")
                        return {"detail": error}, 503, error, UNAVAILABLE_ERROR_TYPE
                    log_line("The app's process stopped; running the request again once "
                             "it is back.", "WARN")
                    continue
                if (status == 503 and retries < MAX_503_RETRIES
                        and NO_RETRY_HEADER not in answer_headers):
                    retries += 1
                    log_line(f"The app answered 503; retrying ({retries}/{MAX_503_RETRIES}).",
                             "WARN")
                    if stop.wait(RETRY_503_DELAY * retries):
                        raise Interrupted()
                    continue
                # The app's last lines for the request may still be in the pipe.
                if hosted.reports_done:
                    answered.wait(LOG_DRAIN_SECONDS)
                return outcome_of(status, answer, hosted.spec.id)

    def _await_restart(self, hosted, gone_pid, stop):
        """Until the supervisor has seen the process die (or ``RESTART_NOTICE`` passed): a
        dying process may still accept a connection, and that attempt would count as
        another rerun."""
        deadline = time.monotonic() + RESTART_NOTICE
        while hosted.state == HEALTHY and hosted.pid == gone_pid \
                and time.monotonic() < deadline:
            if stop.wait(WATCH_INTERVAL):
                return

    def _cancel_requested(self, request_id):
        job = self.runtime.queue.get(request_id)
        return job is not None and job.cancel_requested

    def _call(self, hosted, port, path, body, headers, request_id, stop):
        call = AppCall(port, "POST", path, body, {**headers, **hosted.headers()})
        finished = threading.Event()
        stopping = []

        def watch():
            cancel_sent = False
            while not finished.wait(WATCH_INTERVAL):
                if stop.is_set():
                    stopping.append(True)
                    call.abort()
                    return
                if not cancel_sent and self._cancel_requested(request_id):
                    cancel_sent = True
                    if not self._forward_cancel(hosted, port, path, headers):
                        call.abort()
                        return

        watcher = threading.Thread(target=watch, daemon=True, name=f"watch-{request_id}")
        watcher.start()
        try:
            response = call.send()
            answer = call.read_all(response)
            return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
        except AppGone:
            if stopping:
                raise _Stopping() from None
            raise
        finally:
            finished.set()
            watcher.join(timeout=5)

    def _forward_cancel(self, hosted, port, path, headers):
        """POST ``<path>/cancel``; False when the app has no such route (or failed)."""
        cancel_path = path.rstrip("/") + "/cancel"
        call = AppCall(port, "POST", cancel_path, b"{}", {**headers, **hosted.headers()},
                       timeout=10)
        try:
            response = call.send()
            call.read_all(response)
        except AppGone:
            return False
        return 200 <= response.status < 300

