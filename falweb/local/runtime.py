"""The local runtime's services wired together, and the worker threads that run jobs.

A running job keeps its lease through a heartbeat (one thread for the whole runtime), not
only at each engine step: encoding and storing the outputs, or a long first model load,
can take longer than the lease, and another worker must not start the job again meanwhile.

A maintenance thread applies the retention (:meth:`Runtime.cleanup`) at start and every
``CLEANUP_INTERVAL`` seconds: expired files and uploads, finished jobs and their delivered
webhooks go, in small batches of short transactions, so requests and workers never wait
long for the write lock. With several processes on one instance folder, one of them runs
it per interval (claimed in the database).
"""

import atexit
import logging
import os
import threading
import time
import uuid

from PIL import Image

from falweb.local import sql
from falweb.local.changes import Changes
from falweb.local.delivery import TIMEOUT as WEBHOOK_TIMEOUT
from falweb.local.delivery import Deliveries
from falweb.local.delivery import WebhookPolicy
from falweb.local.engines import Cancelled
from falweb.local.engines import EngineContext
from falweb.local.engines import InvalidInput
from falweb.local.engines import get_engine
from falweb.local.held_logs import LOG_DELAY
from falweb.local.held_logs import HeldLogs
from falweb.local.inputs import InputFileError
from falweb.local.inputs import check_image
from falweb.local.inputs import read_input_file
from falweb.local.queue import CANCELLED_ERROR
from falweb.local.queue import CANCELLED_ERROR_TYPE
from falweb.local.queue import Interrupted
from falweb.local.queue import JobQueue
from falweb.local.sql import open_database
from falweb.local.storage import StorageFull
from falweb.local.storage_backends import open_storage
from falweb.local.tokens import Tokens
from falweb.local.tokens import WebhookKey

log = logging.getLogger("falweb.local")

IDLE_WAIT = 0.05
#: Seconds between two looks of a status stream at its job on SQLite; on PostgreSQL a
#: NOTIFY wakes it, and it looks on its own only this often (a lost notification).
STREAM_POLL = 0.05
SHARED_STREAM_POLL = 1.0
#: Seconds between two runs of the retention cleanup (in any process on the folder).
CLEANUP_INTERVAL = 300.0
#: Rows per cleanup transaction: each holds the write lock for a few milliseconds.
CLEANUP_BATCH = 200
INSUFFICIENT_STORAGE_ERROR_TYPE = "insufficient_storage"


class Runtime:
    """Queue, storage, tokens, webhook key, engines and workers of one local runtime."""

    def __init__(self, config):
        self.config = config
        # The engine first: a misconfigured one fails before anything is opened.
        engine = (config.get("FALWEB_LOCAL_ENGINE") or "preview").strip().lower()
        if engine == "diffusers":
            options = {"model": config.get("FALWEB_LOCAL_MODEL") or "",
                       "device": config.get("FALWEB_LOCAL_DEVICE") or "",
                       "weights_dirs": weights_dirs(config)}
        else:
            options = {"step_delay": config["FALWEB_LOCAL_STEP_DELAY"]}
        self.engine = get_engine(engine, **options)
        folder = os.path.join(config["FALWEB_INSTANCE_PATH"], "local")
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        # SQLite in the folder, or PostgreSQL (FALWEB_DATABASE_URL) shared by every host.
        self.db = open_database(config, folder)
        shared = self.db.dialect == "postgres"
        self.queue = JobQueue(self.db, float(config["FALWEB_LOCAL_LEASE_SECONDS"]))
        self.storage = open_storage(self.db, config, os.path.join(folder, "files"))
        keep = self.db.secret if shared else None
        self.tokens = Tokens(folder, config["FALWEB_LOCAL_MAX_TOKEN_SECONDS"], keep=keep)
        self.webhook_key = WebhookKey(folder, keep=keep)
        self.changes = Changes(STREAM_POLL if not shared else SHARED_STREAM_POLL)
        # A change made in this process wakes its streams at once, not at their next look.
        self.queue.changed = self.changes.notify
        self._listener = None
        self.webhooks = WebhookPolicy(_as_list(config.get("FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS")))
        self.deliveries = Deliveries(self.db, self.webhook_key,
                                     timeout=float(config.get("FALWEB_LOCAL_WEBHOOK_TIMEOUT",
                                                              WEBHOOK_TIMEOUT)))
        self.file_retention = float(config.get("FALWEB_LOCAL_FILE_RETENTION_SECONDS") or 0)
        self.job_retention = float(config.get("FALWEB_LOCAL_JOB_RETENTION_SECONDS") or 0)
        self.max_fetch_bytes = int(config["FALWEB_LOCAL_MAX_FETCH_BYTES"])
        self.max_input_pixels = int(config["FALWEB_LOCAL_MAX_INPUT_PIXELS"])
        self.max_output_pixels = int(config["FALWEB_LOCAL_MAX_OUTPUT_PIXELS"])
        # Pillow's own guard, process-wide, at the same limit: whatever decodes an image
        # here (an engine, a GIF's later frame) refuses one far above it.
        Image.MAX_IMAGE_PIXELS = self.max_input_pixels
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads = []
        # Jobs this runtime's workers are running, for the lease keeper: request_id →
        # (worker_id, the job's HeldLogs).
        self._held = {}
        self._logs_held = threading.Event()  # a job holds a log line back (see held_logs)
        self._held_lock = threading.Lock()
        self._keeper_stop = threading.Event()
        self._keeper = None
        self.started_at = time.time()
        # Hosted apps (FALWEB_APPS): None when there are none.
        from falweb.local.apps import hosted_apps

        self.apps = hosted_apps(self, config)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, workers=None, services=True):
        """Start ``workers`` (default: FALWEB_LOCAL_WORKERS) job threads and the webhook sender.

        ``services=False`` (``falweb local --workers-only``): job threads only; the hosts
        that serve the API send the webhooks and run the retention cleanup, so a GPU box
        killed mid-run never has a delivery in flight.
        """
        count = int(self.config["FALWEB_LOCAL_WORKERS"] if workers is None else workers)
        first = not self._threads and self._keeper is None
        if first and self.db.dialect == "postgres":
            from falweb.store.postgres import Listener

            self._listener = Listener(self.db, (sql.JOB_CHANNEL, sql.NEW_JOB_CHANNEL,
                                                sql.DELIVERY_CHANNEL), self._notified).start()
        for n in range(count):
            self._spawn(self._work, f"falweb-local-worker-{len(self._threads)}-{n}")
        if first:
            # Hosted apps run where jobs run (a workers-only box included).
            if self.apps is not None:
                self.apps.start()
            if services:
                self._spawn(lambda: self.deliveries.run(self._stop), "falweb-local-webhooks")
                self._spawn(self._maintain, "falweb-local-cleanup")
            self._keeper = threading.Thread(target=self._keep_leases, daemon=True,
                                            name="falweb-local-leases")
            self._keeper.start()
            # On a normal exit (gunicorn restarting a worker, Ctrl-C) running jobs go back
            # to the queue at once instead of waiting for their lease to expire.
            atexit.register(self.close)

    def _notified(self, channel, payload):
        # PostgreSQL told this process of a change made by any host (falweb.local.sql).
        if channel == sql.JOB_CHANNEL:
            self.changes.notify(payload)
        elif channel == sql.NEW_JOB_CHANNEL:
            self._wake.set()
        elif channel == sql.DELIVERY_CHANNEL:
            self.deliveries.wake()
        else:  # reconnected: anything may have changed meanwhile
            self.changes.notify(None)
            self._wake.set()
            self.deliveries.wake()

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
        if self.apps is not None:
            self.apps.close()
        # Only now: a job still finishing while the workers stop keeps its lease meanwhile.
        self._keeper_stop.set()
        self._logs_held.set()  # (the keeper waits on it)
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        if self._listener is not None:
            self._listener.close()
        self.deliveries.close()
        self.db.close()

    def allow_webhook_prefix(self, prefix):
        """Let webhooks go to URLs under ``prefix`` although it is a local or private
        address (webhooks otherwise go to public addresses only).

        For an app that embeds the runtime and has it deliver webhooks to itself
        (``http://127.0.0.1:<port>/webhooks/fal``): call it with that URL before submitting
        requests that name it. A prefix matches URLs of the same scheme, host and port
        whose path is the prefix's path or below it. Jobs submitted with an allowed URL are
        delivered as allowed by whichever process delivers them. ``ValueError`` when
        ``prefix`` is not an http(s) URL.
        """
        self.webhooks.allow(prefix)

    def wake(self):
        """A job was submitted: let an idle worker look now rather than at its next poll."""
        self._wake.set()

    def state(self):
        state = {"status": "ok", "engine": self.engine.name,
                 "synthetic": self.engine.synthetic,
                 "workers": int(self.config["FALWEB_LOCAL_WORKERS"]),
                 "jobs": self.queue.counts()}
        if self.apps is not None:
            state["apps"] = self.apps.state()
        return state

    # -- retention ------------------------------------------------------------------------

    def _maintain(self):
        while not self._stop.is_set():
            try:
                if self._claim_cleanup():
                    self.cleanup()
            except Exception:
                log.exception("the retention cleanup failed")
            self._stop.wait(CLEANUP_INTERVAL)

    def _claim_cleanup(self, now=None):
        """True for the one process that should run the cleanup now (none ran it within
        the interval)."""
        now = time.time() if now is None else now
        # One statement, the same in both dialects: the row is taken only when no process
        # ran the cleanup within the interval (PostgreSQL runs it on several hosts at once).
        with self.db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO maintenance (task, ran_at) VALUES ('cleanup', ?)"
                " ON CONFLICT (task) DO UPDATE SET ran_at = excluded.ran_at"
                " WHERE NOT (maintenance.ran_at > ? AND maintenance.ran_at <= ?)"
                " RETURNING task", (now, now - CLEANUP_INTERVAL, now)).fetchone()
        return row is not None

    def cleanup(self, now=None, batch=CLEANUP_BATCH):
        """Apply the retention once: delete expired files and uploads (rows, then folders),
        finished jobs (with logs and delivered webhooks) and folders left without a row.
        Batches of ``batch`` rows, one short transaction each. Returns what it deleted:
        ``{"files": n, "jobs": n, "deliveries": n, "folders": n}``."""
        now = time.time() if now is None else now
        done = {"files": 0, "jobs": 0, "deliveries": 0, "folders": 0}
        steps = [("files", lambda: self.storage.expire(now, self.file_retention, batch))]
        if self.job_retention:
            cutoff = now - self.job_retention
            steps += [("jobs", lambda: self.queue.purge(cutoff, batch)),
                      ("deliveries", lambda: self.deliveries.purge(cutoff, batch))]
        for name, step in steps:
            while not self._stop.is_set():
                count = step()
                done[name] += count
                if count < batch:
                    break
                time.sleep(0.001)  # let waiting writers in between batches
        if not self._stop.is_set():
            done["folders"] = self.storage.sweep(now, stop=self._stop)
        if any(done.values()):
            log.info("retention cleanup: %s", done)
        return done

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

    def _keep_leases(self):
        """Renew the lease of every job held here, every third of a lease, and write the
        log lines a job has held for LOG_DELAY (see :mod:`falweb.local.held_logs`), until
        closed."""
        interval = self.queue.lease_seconds / 3
        renew_at = time.monotonic() + interval
        while not self._keeper_stop.is_set():
            self._logs_held.wait(max(0.0, renew_at - time.monotonic()))
            if self._logs_held.is_set() and not self._keeper_stop.wait(LOG_DELAY):
                self._logs_held.clear()
                self._write_held_logs()
            if time.monotonic() < renew_at:
                continue
            renew_at = time.monotonic() + interval
            with self._held_lock:
                held = [(request_id, worker_id)
                        for request_id, (worker_id, _) in self._held.items()]
            if not held:
                continue
            try:
                self.queue.renew(held)
            except Exception:
                log.exception("renewing the leases of running jobs failed")

    def _write_held_logs(self):
        with self._held_lock:
            held = list(self._held.items())
        for request_id, (worker_id, logs) in held:
            if not logs:
                continue
            with logs.writing:
                lines = logs.take()
                if not lines:
                    continue
                try:
                    self.queue.heartbeat(request_id, worker_id, earlier=lines)
                except Exception:
                    log.exception("writing the log lines of %s failed", request_id)

    def run_job(self, job, worker_id):
        """Run a claimed job to its end, keeping its lease all along."""
        logs = HeldLogs()
        with self._held_lock:
            self._held[job.request_id] = (worker_id, logs)
        try:
            self._run_job(job, worker_id, logs)
        finally:
            with self._held_lock:
                self._held.pop(job.request_id, None)

    def _run_job(self, job, worker_id, logs):
        from falweb.schemas import get_endpoint

        hosted = self.apps is not None and self.apps.find(job.endpoint_id)
        endpoint = None if hosted else get_endpoint(job.endpoint_id)

        def progress(step, total):
            if self._stop.is_set():
                raise Interrupted()
            with logs.writing:
                _, cancel = self.queue.heartbeat(job.request_id, worker_id,
                                                 f"Step {step}/{total}", earlier=logs.take())
            return cancel

        def log_line(message, level):
            # Written with the next step or the result, or by the lease keeper.
            logs.add(message, level)
            self._logs_held.set()

        started = time.perf_counter()
        try:
            if hosted:
                outcome = self.apps.execute_job(job, log_line, self._stop)
            else:
                outcome = self.execute(endpoint, job.input, job.base_url, log_line, progress)
        except Interrupted:
            # Stopping (a restart, a deploy): let the next worker start it at once rather
            # than after the lease runs out.
            with logs.writing:
                self.queue.heartbeat(job.request_id, worker_id, earlier=logs.take())
            self.queue.release(job.request_id, worker_id)
            return
        result, result_status, error, error_type = outcome
        metrics = {"inference_time": round(time.perf_counter() - started, 4)}
        with logs.writing:
            completed = self.queue.complete(
                job.request_id, worker_id, result=result, result_status=result_status,
                error=error, error_type=error_type, metrics=metrics, logs=logs.take())
        if completed and job.webhook_url:
            # Read back only for a webhook, which carries the stored result.
            self._finished(self.queue.get(job.request_id))

    def _finished(self, job):
        if job is not None and job.webhook_url:
            self.deliveries.enqueue(job)

    def execute(self, endpoint, input, base_url, log_line, progress):
        """Run ``input`` on the engine: (result, http status, error, error_type).

        An input that fails its checks here (a fetched file that is not an image) or in the
        engine is fal's 422 naming the field, with error_type ``validation_error``.
        """
        try:
            files = self.check_input(endpoint, input, base_url)
        except InvalidInput as exc:
            return _invalid(exc)

        saved = []

        def save(data, content_type, file_name):
            file_id, name = self.storage.save(data, content_type, file_name)
            saved.append(file_id)
            return f"{base_url.rstrip('/')}/cdn/files/{file_id}/{name}"

        ctx = EngineContext(endpoint, log=log_line, progress=progress, save=save, files=files)
        try:
            return self.engine.run(input, ctx), 200, None, None
        except InvalidInput as exc:
            return _invalid(exc)
        except StorageFull as exc:
            # The outputs already stored are of no use without the rest: none stays.
            for file_id in saved:
                self.storage.delete(file_id)
            return ({"detail": str(exc)}, 507, str(exc), INSUFFICIENT_STORAGE_ERROR_TYPE)
        except Cancelled:
            return {"detail": CANCELLED_ERROR}, 400, CANCELLED_ERROR, CANCELLED_ERROR_TYPE
        except Interrupted:
            raise
        except Exception as exc:
            log.exception("engine failed on %s", endpoint.endpoint_id)
            detail = f"Internal error in the {self.engine.name} engine: {type(exc).__name__}"
            return {"detail": detail}, 500, detail, "internal_error"

    def serves(self, endpoint):
        """False for an endpoint this runtime's engine cannot answer in its documented shape:
        a real engine (diffusers) makes images only, so a documented endpoint whose output
        has no ``images`` (video, audio, text) is left to the preview engine."""
        if endpoint.document is None or getattr(self.engine, "synthetic", False):
            return True
        return "images" in endpoint.output_schema._declared_fields

    def check_input(self, endpoint, input, base_url, allow_fetch=True):
        """The bytes of the file inputs by field, once the request is checked against this
        runtime's limits; :class:`InvalidInput` naming the field otherwise.

        ``allow_fetch=False`` (at submit) checks what needs no network: the output size,
        data URIs and this runtime's own files; public URLs are fetched and checked when the
        job runs.
        """
        self.check_output_size(input)
        return self.input_files(endpoint, input, base_url, allow_fetch)

    def check_output_size(self, input):
        """Bound what one request makes: width × height × num_images output pixels."""
        from falweb.schemas import resolve_image_size

        width, height = resolve_image_size(input.get("image_size") or "square")
        count = int(input.get("num_images") or 1)
        limit = self.max_output_pixels
        if width * height > limit:
            raise InvalidInput("image_size", f"{width}x{height} is larger than the {limit} "
                                             "output pixels allowed per request")
        if width * height * count > limit:
            raise InvalidInput("num_images", f"{count} images of {width}x{height} are "
                                             f"{width * height * count} pixels, more than "
                                             f"the {limit} allowed per request")

    def input_files(self, endpoint, input, base_url, allow_fetch=True):
        """The bytes of each file input, by field. Every file input of the served endpoints
        is an image: each is checked from its header before any pixel is decoded."""
        files = {}
        for field in endpoint.file_fields:
            value = input.get(field)
            if not value:
                continue
            try:
                read = read_input_file(value, storage=self.storage, base_url=base_url,
                                       limit=self.max_fetch_bytes, allow_fetch=allow_fetch)
                if read is None:
                    continue
                data, content_type = read
                # A documented endpoint's *_url inputs may be audio or video: only the
                # image ones are held to the image checks.
                if endpoint.document is None or "image" in field:
                    check_image(data, content_type, self.max_input_pixels)
            except InputFileError as exc:
                raise InvalidInput(field, str(exc)) from None
            files[field] = data
        return files


def _as_list(value):
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def weights_dirs(config):
    """The folders the diffusers engine loads LoRAs and embeddings from:
    FALWEB_LOCAL_WEIGHTS_DIRS, or ``<instance>/weights``."""
    listed = _as_list(config.get("FALWEB_LOCAL_WEIGHTS_DIRS"))
    return listed or [os.path.join(config["FALWEB_INSTANCE_PATH"], "weights")]


def _invalid(exc):
    """The stored answer of a request whose input ``exc`` refused: fal's 422."""
    detail = [{"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}]
    return {"detail": detail}, 422, f"Invalid input: {exc.field}", "validation_error"
