"""Several processes on one instance folder (gunicorn workers), one copy of each app.

The process that holds ``apps.lock`` (an ``flock``) supervises the apps and writes their
state — port, secret, state, error — to ``apps-state.json`` (mode 0600) whenever it changes.
The others read that file and call the same processes (:class:`RemoteApp`); each of them
tries the lock every second, so when the owner goes another takes over and starts the apps.
An app's ``max_concurrency`` holds across processes: a call takes one of its slot files
(``flock`` again, which also frees the slot of a process that died).
"""

import contextlib
import fcntl
import json
import os
import threading
import time

from falweb.local.apps.supervisor import FAILED
from falweb.local.apps.supervisor import HEALTHY
from falweb.local.apps.supervisor import SECRET_HEADER
from falweb.local.apps.supervisor import STOPPED
from falweb.local.apps.supervisor import AppUnavailable

LOCK_FILE = "apps.lock"
STATE_FILE = "apps-state.json"
SLOT_POLL = 0.02


class OwnerLock:
    """The lock that makes one process the apps' supervisor."""

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK_FILE)
        self._fd = None

    def try_acquire(self):
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_state(folder, apps):
    """Publish ``{app_id: describe() + port and secret}`` for the other processes."""
    path = os.path.join(folder, STATE_FILE)
    # A name of its own per writer: the supervisor's threads publish too (two of one
    # process sharing a name lost the race: "No such file" for the second).
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(apps, f)
    os.replace(tmp, path)


class StateFile:
    """The owner's published state, re-read when the file changes."""

    def __init__(self, folder):
        self.path = os.path.join(folder, STATE_FILE)
        self._stamp = None
        self._apps = {}

    def get(self, app_id):
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as f:
                    self._apps = json.load(f)
                self._stamp = stamp
        except (OSError, ValueError):
            pass
        return self._apps.get(app_id) or {}


class RemoteApp:
    """An app another process supervises, seen through its state file; the same calls as
    :class:`~falweb.local.apps.supervisor.HostedApp` that routing and jobs use."""

    reports_done = False

    def __init__(self, spec, state_file):
        self.spec = spec
        self._state = state_file
        self.lines = ()

    def _now(self):
        return self._state.get(self.spec.id)

    state = property(lambda self: self._now().get("state", "starting"))
    error = property(lambda self: self._now().get("error"))
    port = property(lambda self: self._now().get("port"))
    max_concurrency = property(lambda self: self._now().get("max_concurrency"))
    pid = property(lambda self: self._now().get("pid"))

    def headers(self):
        return {SECRET_HEADER: self._now().get("secret") or ""}

    def describe(self):
        now = self._now()
        return {k: now.get(k) for k in ("id", "app", "state", "error", "pid", "restarts",
                                         "max_concurrency", "venv", "native")} | {
            "id": self.spec.id, "app": self.spec.app, "state": now.get("state", "starting"),
            "supervised_by": now.get("supervised_by")}

    def wait_ready(self, timeout, stop=None):
        deadline = time.monotonic() + timeout
        while True:
            now = self._now()
            state = now.get("state")
            if state == HEALTHY and now.get("port"):
                return now["port"]
            if state == FAILED:
                raise AppUnavailable(f"app {self.spec.id} is not running: {now.get('error')}")
            if state == STOPPED:
                raise AppUnavailable(f"app {self.spec.id} is stopped")
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                raise AppUnavailable(f"app {self.spec.id} did not become healthy in "
                                     f"{timeout:.0f} s ({state or 'starting'})")
            time.sleep(0.1)

    def suspect(self):
        pass

    def kill(self):
        raise RuntimeError(f"app {self.spec.id} is supervised by another process")


class Slots:
    """At most ``limit`` holders at once across processes: one ``flock``ed file each."""

    def __init__(self, folder, app_id, limit):
        self.paths = [os.path.join(folder, f"slot-{app_id.replace('/', '--')}-{n}.lock")
                      for n in range(limit)]

    @contextlib.contextmanager
    def hold(self, stop=None, stopping=RuntimeError):
        fd = None
        while fd is None:
            for path in self.paths:
                candidate = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(candidate, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(candidate)
                    continue
                fd = candidate
                break
            else:
                if stop is not None and stop.is_set():
                    raise stopping()
                time.sleep(SLOT_POLL)
        try:
            yield
        finally:
            os.close(fd)
