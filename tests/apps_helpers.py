"""Helpers for the hosted-app tests: the fal SDK's virtualenv, a runtime hosting apps,
fal's official Python client pointed at it, a webhook receiver."""

import contextlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask import request

from falweb.testing import ServerThread
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TEST_APPS = Path(__file__).resolve().parent / "apps"
FAL_VENV = Path(os.environ.get("FALWEB_TEST_FAL_VENV", ROOT / ".venv-falapps"))
FAL_PYTHON = FAL_VENV / "bin" / "python"


def _fal_sdk_reason():
    if not FAL_PYTHON.exists():
        return f"no {FAL_VENV} (scripts/test-setup.sh creates it with fal pinned)"
    done = subprocess.run([str(FAL_PYTHON), "-c", "import fal, fastapi, uvicorn, PIL"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return f"fal's SDK does not import in {FAL_VENV}: {done.stderr.strip()[-300:]}"
    return None


_REASON = []


def require_fal_sdk():
    """Skip, with the reason, when the fal SDK's virtualenv is missing or broken."""
    if not _REASON:
        _REASON.append(_fal_sdk_reason())
    if _REASON[0]:
        pytest.skip(_REASON[0])


def healthy(runtime, timeout=60):
    """Wait until every hosted app of ``runtime`` is healthy; fail naming the state."""
    apps = runtime.apps
    return wait_until(lambda: all(a["state"] == "healthy" for a in apps.state()),
                      timeout=timeout, message=lambda: f"healthy apps, got {apps.state()}")


@contextlib.contextmanager
def hosting(tmp_path, apps, **config):
    """A local runtime on a loopback port hosting ``apps`` (FILE::Class entries)."""
    settings = {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path),
                "FALWEB_LOCAL_WORKERS": 3, "FALWEB_APPS": apps,
                "FALWEB_APPS_VENV": str(FAL_VENV), **config}
    with serve_local_runtime(settings) as server:
        yield server


@contextlib.contextmanager
def official_client(url):
    """fal's official Python client (``fal_client``) talking to the runtime at ``url``.

    Its hosts are constants (``https://`` only; fal-protocol §13.2): they are pointed at the
    runtime for the duration, with a placeholder key (the runtime needs none).
    """
    import fal_client
    import fal_client.client as module

    patch = pytest.MonkeyPatch()
    ws = url.replace("http://", "ws://", 1)
    patch.setattr(module, "RUN_URL_FORMAT", f"{url}/run/")
    patch.setattr(module, "QUEUE_URL_FORMAT", f"{url}/queue/")
    patch.setattr(module, "REALTIME_URL_FORMAT", f"{ws}/run/")
    patch.setattr(module, "REST_URL", f"{url}/rest")
    try:
        yield fal_client.SyncClient(key="local:placeholder", default_timeout=60)
    finally:
        patch.undo()


class WebhookReceiver:
    """A server recording the webhooks delivered to it (``.url``, ``.bodies``)."""

    def __init__(self):
        self.bodies = []
        self._lock = threading.Lock()
        app = Flask("webhook-receiver")

        @app.post("/hook")
        def hook():
            with self._lock:
                self.bodies.append(request.get_json(silent=True))
            return "", 200

        self.server = ServerThread(app)
        self.url = f"{self.server.url}/hook"

    def close(self):
        self.server.shutdown()
