"""One hosted app's process: start it in its virtualenv, wait for ``/health``, restart it
with backoff when it dies, stop it with the runtime.

The process gets a scrubbed environment: no ``FAL_KEY``/``FAL_KEY_ID``/``FAL_KEY_SECRET``
and no falweb settings, only a dummy key that makes fal's SDK upload to falweb's uploader
socket (a real key would let a refused local upload fall back to fal's CDN). It listens on
127.0.0.1 and answers only calls carrying its per-process secret.

States: ``starting`` → ``healthy``; ``restarting`` after a healthy process died (jobs wait
for it); ``failed`` when it never became healthy (an import error, a crash in ``setup``,
no answer on ``/health`` in time): jobs fail at once with that error while it retries.
"""

import collections
import http.client
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import threading
import time

log = logging.getLogger("falweb.local.apps")

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")
SECRET_HEADER = "x-falweb-app-secret"
BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)
LOG_LINES = 200
HEALTH_POLL = 0.1
STOP_GRACE = 5.0

STARTING = "starting"
HEALTHY = "healthy"
RESTARTING = "restarting"
FAILED = "failed"
STOPPED = "stopped"

# Variables never passed to an app: credentials, and falweb's own settings.
_SCRUBBED_PREFIXES = ("FAL_", "FALWEB_")


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*:")


class AppUnavailable(Exception):
    """The app cannot take a request now; the message says why."""


def app_environment(uploader_socket, secret, app_name):
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update({
        "FAL_USE_LOCAL_UPLOADER": "1",
        "FAL_API_SOCKET": uploader_socket,
        # The SDK refuses to reach the uploader socket without a key; this one opens nothing.
        "FAL_KEY": "local:local",
        "FAL_APP_NAME": app_name,
        "FALWEB_APP_SECRET": secret,
        "PYTHONUNBUFFERED": "1",
    })
    return env


class HostedApp:
    """The supervised process of one :class:`~falweb.local.apps.specs.AppSpec`.

    ``on_log(app_id, request_id, message, level)`` receives every line the app prints;
    lines printed outside a request have ``request_id`` None. ``on_done(request_id)``: the
    app finished answering that request (every line it printed for it came before).
    """

    #: Sends a ``done`` line after each answer (a remote view of the app cannot wait for it).
    reports_done = True

    def __init__(self, spec, uploader_socket, on_log, startup_seconds=300.0,
                 on_done=lambda request_id: None, on_change=lambda: None):
        self.spec = spec
        self.on_done = on_done
        self.on_change = on_change
        self.uploader_socket = uploader_socket
        self.on_log = on_log
        self.startup_seconds = float(startup_seconds)
        self.state = STARTING
        self.error = None
        self.name = spec.id.split("/", 1)[1]
        self.max_concurrency = None
        self.port = None
        self.secret = None
        self.pid = None
        self.restarts = 0
        self.started_at = None
        self.lines = collections.deque(maxlen=LOG_LINES)
        self._proc = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = None

    # -- what callers see -----------------------------------------------------------------

    def describe(self):
        return {"id": self.spec.id, "app": self.spec.app, "state": self.state,
                "error": self.error, "pid": self.pid, "restarts": self.restarts,
                "max_concurrency": self.max_concurrency,
                "venv": self.spec.venv or None, "native": self.spec.native}

    def headers(self):
        return {SECRET_HEADER: self.secret or ""}

    def wait_ready(self, timeout, stop=None):
        """The port of the healthy process; :class:`AppUnavailable` when the app failed
        (at once) or is not back within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.state == HEALTHY:
                    return self.port
                if self.state == FAILED:
                    raise AppUnavailable(f"app {self.spec.id} is not running: {self.error}")
                if self.state == STOPPED:
                    raise AppUnavailable(f"app {self.spec.id} is stopped")
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    raise AppUnavailable(f"app {self.spec.id} did not become healthy in "
                                         f"{timeout:.0f} s ({self.state})")
                self._changed.wait(min(left, 0.2))

    def suspect(self):
        """A call found the app gone: check now rather than at the next poll."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._set(RESTARTING, self.error)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._supervise, daemon=True,
                                        name=f"falweb-app-{self.name}")
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._kill()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE + 5)
        self._set(STOPPED, self.error)

    def kill(self):
        """SIGKILL the app's processes, as a crash would; the supervisor starts it again."""
        proc = self._proc
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)

    def _set(self, state, error=None):
        with self._changed:
            self.state = state
            self.error = error
            self._changed.notify_all()
        self.on_change()

    def _supervise(self):
        failures = 0
        while not self._stop.is_set():
            healthy = self._run_once()
            if self._stop.is_set():
                break
            failures = 0 if healthy else failures + 1
            self.restarts += 1
            delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
            log.warning("app %s stopped (%s); starting it again in %s s", self.spec.id,
                        self.error, delay)
            self._stop.wait(delay)

    def _run_once(self):
        """Run one process to its end; True if it had become healthy."""
        if not os.path.exists(self.spec.python):
            self._set(FAILED, f"no Python at {self.spec.python} (create the app's virtualenv"
                              " and install fal in it: see README, 'Your own apps')")
            return False
        self.secret = secrets.token_urlsafe(24)
        self.port = None
        env = app_environment(self.uploader_socket, self.secret, self.name)
        if self.spec.native:
            # A native app imports falweb from this checkout or install.
            import falweb

            root = os.path.dirname(os.path.dirname(os.path.abspath(falweb.__file__)))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        try:
            proc = subprocess.Popen(
                [self.spec.python, BOOTSTRAP, self.spec.file, self.spec.class_name],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=os.path.dirname(self.spec.file), start_new_session=True)
        except OSError as exc:
            self._set(FAILED, f"could not start {self.spec.python}: {exc}")
            return False
        self._proc = proc
        self.pid = proc.pid
        self.started_at = time.time()
        # A failed app stays failed (requests end at once, with its error) until a retry
        # becomes healthy; one that crashed after being healthy is "restarting" (jobs wait).
        if self.state not in (RESTARTING, FAILED):
            self._set(STARTING)
        listening = threading.Event()
        failure = []
        readers = [
            threading.Thread(target=self._read_events, args=(proc.stdout, listening, failure),
                             daemon=True, name=f"falweb-app-{self.name}-out"),
            threading.Thread(target=self._read_raw, args=(proc.stderr,), daemon=True,
                             name=f"falweb-app-{self.name}-err"),
        ]
        for reader in readers:
            reader.start()
        healthy = self._await_health(proc, listening)
        if healthy:
            self._set(HEALTHY)
            log.info("app %s is healthy (pid %s, port %s)", self.spec.id, proc.pid, self.port)
            while proc.poll() is None and not self._stop.wait(0.2):
                pass
        if self._stop.is_set():
            return healthy
        code = proc.wait()
        for reader in readers:
            reader.join(timeout=2)
        if healthy:
            self._set(RESTARTING, f"the app process exited with code {code}")
        elif self.state != FAILED:
            detail = failure[0] if failure else self._last_error_line()
            self._set(FAILED, f"the app exited with code {code} before it was healthy"
                              + (f": {detail}" if detail else ""))
        return healthy

    def _await_health(self, proc, listening):
        deadline = time.monotonic() + self.startup_seconds
        while not self._stop.is_set():
            if proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self._set(FAILED, f"the app did not answer /health within "
                                  f"{self.startup_seconds:.0f} s")
                self._kill()
                return False
            if listening.is_set() and self._health_ok():
                return True
            self._stop.wait(HEALTH_POLL)
        return False

    def _health_ok(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/health", headers=self.headers())
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _kill(self):
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    # -- the app's output -----------------------------------------------------------------

    def _read_events(self, stream, listening, failure):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self._log(None, line, "INFO")
            elif "log" in event:
                level = "ERROR" if event.get("stream") == "stderr" else "INFO"
                self._log(event.get("request_id"), str(event["log"]), level)
            elif event.get("event") == "loaded":
                self.max_concurrency = event.get("max_concurrency")
                self.on_change()
            elif event.get("event") == "listening":
                self.port = int(event["port"])
                listening.set()
            elif event.get("event") == "done":
                self.on_done(event.get("request_id"))
            elif event.get("event") == "failed":
                failure.append(event.get("error"))
        stream.close()

    def _read_raw(self, stream):
        for raw in stream:
            self._log(None, raw.decode("utf-8", "replace").rstrip("\n"), "ERROR")
        stream.close()

    def _log(self, request_id, message, level):
        self.lines.append({"request_id": request_id, "message": message, "level": level,
                           "timestamp": time.time()})
        try:
            self.on_log(self.spec.id, request_id, message, level)
        except Exception:
            log.exception("recording a line of app %s failed", self.spec.id)

    def _last_error_line(self):
        """The line that best says why the process ended: the last exception line of a
        traceback, else the last line it printed."""
        lines = [line["message"] for line in self.lines
                 if line["message"].strip() and not line["message"].startswith("[debug]")]
        for text in reversed(lines):
            if _EXCEPTION_LINE.match(text):
                return text.strip()
        return lines[-1].strip()[:500] if lines else None
