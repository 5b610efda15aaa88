"""Hosted apps: your own model APIs (fal apps, or falweb's native ones) behind the runtime.

Each app named in ``FALWEB_APPS`` (or by ``falweb apps add``) runs as a supervised process in
its own virtualenv (:mod:`.supervisor`, :mod:`.bootstrap`). The runtime owns the protocol —
queue, status, webhooks, storage, tokens, realtime auth — and the app only computes:

- endpoint ids ``<owner>/<app>[/<sub-path>]`` map to the app's routes (:mod:`.routes`);
- queue jobs are forwarded by the runtime's own workers (:mod:`.jobs`);
- the files an app uploads land in the runtime's storage through the SDK's local-uploader
  socket (:mod:`.uploader`), so outputs come back as the runtime's file URLs.
"""

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time

from falweb.local.apps.jobs import JobRunner
from falweb.local.apps.ownership import OwnerLock
from falweb.local.apps.ownership import RemoteApp
from falweb.local.apps.ownership import Slots
from falweb.local.apps.ownership import StateFile
from falweb.local.apps.ownership import write_state
from falweb.local.apps.specs import configured_specs
from falweb.local.apps.supervisor import HostedApp
from falweb.local.apps.uploader import UploaderSocket

log = logging.getLogger("falweb.local.apps")

OWNER_POLL = 1.0
LATE_LOG_SECONDS = 10.0


def hosted_apps(runtime, config):
    """The :class:`HostedApps` of ``config``, or None when it names no app."""
    specs = configured_specs(config)
    if not specs:
        return None
    return HostedApps(runtime, specs, float(config.get("FALWEB_APPS_STARTUP_SECONDS") or 300))


class HostedApps:
    """The hosted apps of one runtime, their uploader socket, and what routes to them."""

    def __init__(self, runtime, specs, startup_seconds=300.0):
        self.runtime = runtime
        self.specs = specs
        self.startup_seconds = startup_seconds
        # Shared by every process on the instance folder: the owner lock, the published
        # state, the max_concurrency slots (see .ownership).
        self.shared = os.path.join(runtime.folder, "apps")
        os.makedirs(self.shared, mode=0o700, exist_ok=True)
        self.lock = OwnerLock(self.shared)
        self.state_file = StateFile(self.shared)
        self.owner = False
        self.uploader = None
        self.folder = None
        self.by_id = {spec.id: RemoteApp(spec, self.state_file) for spec in specs}
        self.jobs = JobRunner(self, runtime)
        self._lock = threading.Lock()
        self._slots = {}
        # request_id → (base_url, log_line, answered event) of requests the apps run now.
        self._requests = {}
        self._closed = threading.Event()
        # For uploads outside any request (an app's setup): the base callers used last.
        self._last_base_url = runtime.config.get("FALWEB_LOCAL_PUBLIC_URL") or ""

    def start(self):
        if not self._take_ownership():
            threading.Thread(target=self._await_ownership, daemon=True,
                             name="falweb-apps-owner").start()

    def _await_ownership(self):
        # The owner may stop (a gunicorn worker restarting): the first to see it free
        # supervises the apps from then on.
        while not self._closed.wait(OWNER_POLL):
            if self._take_ownership():
                return

    def _take_ownership(self):
        with self._lock:
            if self._closed.is_set() or not self.lock.try_acquire():
                return False
            # Unix socket paths are short (108 bytes): a private folder under the temp
            # dir, not the instance folder, which may be deep.
            self.folder = tempfile.mkdtemp(prefix="falweb-apps-")
            self.uploader = UploaderSocket(os.path.join(self.folder, "uploader.sock"),
                                           self.runtime.storage, self.base_url_for)
            self.by_id = {spec.id: HostedApp(spec, self.uploader.path, self._on_log,
                                             self.startup_seconds, self._on_done,
                                             on_change=self._publish)
                          for spec in self.specs}
            self.owner = True
        self._publish()
        for hosted in self.by_id.values():
            hosted.start()
        return True

    def _publish(self):
        if not self.owner or self._closed.is_set():
            return
        state = {app_id: {**hosted.describe(), "port": hosted.port, "secret": hosted.secret,
                          "supervised_by": os.getpid()}
                 for app_id, hosted in self.by_id.items()}
        try:
            write_state(self.shared, state)
        except OSError:
            log.exception("publishing the apps' state failed")

    def close(self):
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            if self.owner:
                for hosted in self.by_id.values():
                    hosted.stop()
                self.uploader.close()
                shutil.rmtree(self.folder, ignore_errors=True)
                self.lock.release()

    # -- routing --------------------------------------------------------------------------

    def find(self, endpoint_id):
        """(HostedApp, the app's route path) for an endpoint id, or None."""
        parts = endpoint_id.strip("/").split("/")
        if len(parts) < 2:
            return None
        hosted = self.by_id.get(f"{parts[0]}/{parts[1]}")
        if hosted is None:
            return None
        return hosted, "/" + "/".join(parts[2:])

    def execute_job(self, job, log_line, stop):
        hosted, path = self.find(job.endpoint_id)
        return self.jobs.execute(job, hosted, path, log_line, stop)

    @contextlib.contextmanager
    def tracking(self, request_id, base_url, log_line=None):
        """While inside: the app's lines for ``request_id`` go to ``log_line`` and its
        uploads get URLs under ``base_url``."""
        answered = threading.Event()
        self._requests[request_id] = (base_url, log_line, answered)
        self._last_base_url = base_url
        try:
            yield answered
        finally:
            self._requests.pop(request_id, None)

    @contextlib.contextmanager
    def slot(self, hosted, stop=None):
        """One of the app's ``max_concurrency`` slots (across processes), held while inside."""
        limit = hosted.max_concurrency
        if not limit:
            yield
            return
        with self._lock:
            slots = self._slots.get((hosted.spec.id, limit))
            if slots is None:
                slots = self._slots[(hosted.spec.id, limit)] = Slots(
                    self.shared, hosted.spec.id, int(limit))
        from falweb.local.apps.jobs import _Stopping

        with slots.hold(stop, _Stopping):
            yield

    def base_url_for(self, request_id):
        entry = self._requests.get(request_id or "")
        if entry is not None:
            return entry[0]
        job = self.runtime.queue.get(request_id) if request_id else None
        if job is not None:
            return job.base_url
        return (self.runtime.config.get("FALWEB_LOCAL_PUBLIC_URL") or self._last_base_url
                or "http://127.0.0.1")

    def _on_done(self, request_id):
        entry = self._requests.get(request_id or "")
        if entry is not None:
            entry[2].set()

    def _on_log(self, app_id, request_id, message, level):
        entry = self._requests.get(request_id or "")
        if entry is not None and entry[1] is not None:
            entry[1](message, level)
        elif request_id and self._log_for_other_process(request_id, message, level):
            pass
        elif level == "ERROR":
            log.warning("[%s] %s", app_id, message)
        else:
            log.info("[%s] %s", app_id, message)

    def _log_for_other_process(self, request_id, message, level):
        """A line for a queue job another process forwarded: recorded against it as well
        (that process cannot wait for the app's last lines, so they may come just after
        the job completed)."""
        queue = self.runtime.queue
        job = queue.get(request_id)
        if job is None or (job.finished_at is not None
                           and time.time() - job.finished_at > LATE_LOG_SECONDS):
            return False
        with queue.db.transaction() as conn:
            queue._append_log(conn, request_id, message, level)
        return True

    # -- what the runtime shows -----------------------------------------------------------

    def state(self):
        return [hosted.describe() for hosted in self.by_id.values()]

    def logs(self, app_id, limit=100):
        """The last ``limit`` lines app ``app_id`` printed (all requests)."""
        hosted = self.by_id.get(app_id)
        return list(hosted.lines)[-limit:] if hosted else []

    def openapi_documents(self):
        """``{endpoint_id: the app's /openapi.json}`` of the healthy apps (for the catalog;
        over HTTP: ``GET /apps/<id>/openapi.json``)."""
        from falweb.local.apps.calls import AppCall
        from falweb.local.apps.calls import AppGone
        from falweb.local.apps.calls import json_of
        from falweb.local.apps.supervisor import HEALTHY

        documents = {}
        for app_id, hosted in self.by_id.items():
            if hosted.state != HEALTHY:
                continue
            port = hosted.port
            if not port:
                continue
            call = AppCall(port, "GET", "/openapi.json", headers=hosted.headers(), timeout=10)
            try:
                response = call.send()
                body = call.read_all(response)
            except AppGone:
                continue
            document = json_of(body) if response.status == 200 else None
            if isinstance(document, dict):
                documents[app_id] = document
        return documents
