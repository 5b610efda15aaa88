"""The local runtime's services wired together, and the worker threads that run jobs."""

import atexit
import logging
import os
import threading
import time
import uuid

from falweb.local.db import Database
from falweb.local.delivery import Deliveries
from falweb.local.engines import Cancelled
from falweb.local.engines import EngineContext
from falweb.local.engines import get_engine
from falweb.local.inputs import InputFileError
from falweb.local.inputs import read_input_file
from falweb.local.queue import CANCELLED_ERROR
from falweb.local.queue import CANCELLED_ERROR_TYPE
from falweb.local.queue import JobQueue
from falweb.local.storage import Storage
from falweb.local.tokens import Tokens
from falweb.local.tokens import WebhookKey

log = logging.getLogger("falweb.local")

IDLE_WAIT = 0.05


class Interrupted(Exception):
    """The runtime is stopping: the job goes back to the queue, not to an error."""


class Runtime:
    """Queue, storage, tokens, webhook key, engines and workers of one local runtime."""

    def __init__(self, config):
        self.config = config
        # The engine first: a misconfigured one fails before anything is opened.
        engine = (config.get("FALWEB_LOCAL_ENGINE") or "preview").strip().lower()
        if engine == "diffusers":
            options = {"model": config.get("FALWEB_LOCAL_MODEL") or "",
                       "device": config.get("FALWEB_LOCAL_DEVICE") or ""}
        else:
            options = {"step_delay": config["FALWEB_LOCAL_STEP_DELAY"]}
        self.engine = get_engine(engine, **options)
        folder = os.path.join(config["FALWEB_INSTANCE_PATH"], "local")
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.db = Database(os.path.join(folder, "runtime.sqlite3"))
        self.queue = JobQueue(self.db, float(config["FALWEB_LOCAL_LEASE_SECONDS"]))
        self.storage = Storage(self.db, os.path.join(folder, "files"),
                               config["FALWEB_LOCAL_MAX_UPLOAD_BYTES"])
        self.tokens = Tokens(folder, config["FALWEB_LOCAL_MAX_TOKEN_SECONDS"])
        self.webhook_key = WebhookKey(folder)
        self.deliveries = Deliveries(self.db, self.webhook_key)
        self.max_fetch_bytes = int(config["FALWEB_LOCAL_MAX_FETCH_BYTES"])
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads = []
        self.started_at = time.time()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, workers=None):
        """Start ``workers`` (default: FALWEB_LOCAL_WORKERS) job threads and the webhook sender."""
        count = int(self.config["FALWEB_LOCAL_WORKERS"] if workers is None else workers)
        first = not self._threads
        for n in range(count):
            self._spawn(self._work, f"falweb-local-worker-{len(self._threads)}-{n}")
        if first:
            self._spawn(lambda: self.deliveries.run(self._stop), "falweb-local-webhooks")
            # On a normal exit (gunicorn restarting a worker, Ctrl-C) running jobs go back
            # to the queue at once instead of waiting for their lease to expire.
            atexit.register(self.close)

    def _spawn(self, target, name):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self):
        """Stop the workers (running jobs go back to the queue) and close the database."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        atexit.unregister(self.close)
        for thread in self._threads:
            thread.join(timeout=10)
        self.db.close()

    def wake(self):
        """A job was submitted: let an idle worker look now rather than at its next poll."""
        self._wake.set()

    def state(self):
        return {"status": "ok", "engine": self.engine.name,
                "synthetic": self.engine.synthetic,
                "workers": int(self.config["FALWEB_LOCAL_WORKERS"]), "jobs": self.queue.counts()}

    # -- running jobs ---------------------------------------------------------------------

    def _work(self):
        worker_id = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
        while not self._stop.is_set():
            try:
                job = self.queue.claim(worker_id)
                for request_id in self.queue.take_expired():
                    self._finished(self.queue.get(request_id))
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()
                continue
            try:
                self.run_job(job, worker_id)
            except Exception:
                log.exception("job %s failed in the worker", job.request_id)

    def run_job(self, job, worker_id):
        from falweb.schemas import get_endpoint

        endpoint = get_endpoint(job.endpoint_id)

        def progress(step, total):
            if self._stop.is_set():
                raise Interrupted()
            _, cancel = self.queue.heartbeat(job.request_id, worker_id, f"Step {step}/{total}")
            return cancel

        def log_line(message, level):
            self.queue.heartbeat(job.request_id, worker_id, message, level)

        started = time.perf_counter()
        try:
            outcome = self.execute(endpoint, job.input, job.base_url, log_line, progress)
        except Interrupted:
            # Stopping (a restart, a deploy): let the next worker start it at once rather
            # than after the lease runs out.
            self.queue.release(job.request_id, worker_id)
            return
        result, result_status, error, error_type = outcome
        metrics = {"inference_time": round(time.perf_counter() - started, 4)}
        if self.queue.complete(job.request_id, worker_id, result=result,
                               result_status=result_status, error=error,
                               error_type=error_type, metrics=metrics):
            self._finished(self.queue.get(job.request_id))

    def _finished(self, job):
        if job is not None and job.webhook_url:
            self.deliveries.enqueue(job)

    def execute(self, endpoint, input, base_url, log_line, progress):
        """Run ``input`` on the engine: (result, http status, error, error_type)."""
        try:
            files = self.input_files(endpoint, input, base_url)
        except InputFileError as exc:
            field, reason = exc.args
            detail = [{"loc": ["body", field], "msg": reason, "type": "value_error"}]
            return {"detail": detail}, 422, f"Invalid input: {field}", "validation_error"

        def save(data, content_type, file_name):
            file_id, name = self.storage.save(data, content_type, file_name)
            return f"{base_url.rstrip('/')}/cdn/files/{file_id}/{name}"

        ctx = EngineContext(endpoint, log=log_line, progress=progress, save=save, files=files)
        try:
            return self.engine.run(input, ctx), 200, None, None
        except Cancelled:
            return {"detail": CANCELLED_ERROR}, 400, CANCELLED_ERROR, CANCELLED_ERROR_TYPE
        except Interrupted:
            raise
        except Exception as exc:
            log.exception("engine failed on %s", endpoint.endpoint_id)
            detail = f"Internal error in the {self.engine.name} engine: {type(exc).__name__}"
            return {"detail": detail}, 500, detail, "internal_error"

    def input_files(self, endpoint, input, base_url, allow_fetch=True):
        files = {}
        for field in endpoint.file_fields:
            value = input.get(field)
            if not value:
                continue
            try:
                data = read_input_file(value, storage=self.storage, base_url=base_url,
                                       limit=self.max_fetch_bytes, allow_fetch=allow_fetch)
            except InputFileError as exc:
                raise InputFileError(field, str(exc)) from None
            if data is not None:
                files[field] = data
        return files
