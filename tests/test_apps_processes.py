"""Several runtime processes on one instance folder (gunicorn workers): one copy of each
app, supervised by whichever holds the lock, called by all; another takes over when that
one stops. Two runtimes in this process stand for two workers (``flock`` locks conflict
between open files, whichever process holds them)."""

import pytest
import requests

from falweb.testing import serve_local_runtime
from falweb.testing import wait_until
from tests.apps_helpers import TEST_APPS
from tests.local_helpers import wait_status

pytest.importorskip("pydantic", reason="falweb.apps needs pydantic (the test extra has it)")

pytestmark = pytest.mark.slow

TOOLS = "local/native-tools"


def config(folder):
    return {"TESTING": True, "FALWEB_INSTANCE_PATH": str(folder), "FALWEB_LOCAL_WORKERS": 2,
            "FALWEB_APPS": [f"{TEST_APPS}/native_apps.py::NativeTools"]}


def healthy_state(server):
    def ready():
        apps = requests.get(f"{server.url}/healthz", timeout=10).json()["apps"]
        return apps[0] if apps[0]["state"] == "healthy" else None

    return wait_until(ready, timeout=60, message=f"{TOOLS} healthy seen from {server.url}")


def test_one_app_process_serves_every_runtime_and_another_takes_over(tmp_path):
    first = serve_local_runtime(config(tmp_path))
    a = first.__enter__()
    try:
        with serve_local_runtime(config(tmp_path)) as b:
            assert a.runtime.apps.owner and not b.runtime.apps.owner
            seen_a, seen_b = healthy_state(a), healthy_state(b)
            assert seen_a["pid"] == seen_b["pid"]
            # Jobs submitted through either runtime, run by either's workers, with the
            # app's printed lines recorded, and max_concurrency (1) held across both.
            jobs = [requests.post(f"{server.url}/queue/{TOOLS}/slow",
                                  json={"text": f"{n}{name}", "n": 1}, timeout=10).json()
                    for n in range(2) for name, server in (("a", a), ("b", b))]
            for job, text in zip(jobs, ["0a", "0b", "1a", "1b"], strict=True):
                assert wait_status(job["status_url"]).get("error") is None

                def printed(job=job, text=text):
                    body = requests.get(job["status_url"], params={"logs": 1}, timeout=10)
                    return f"slow {text}" in [line["message"] for line in body.json()["logs"]]

                wait_until(printed, timeout=10, message=f"the app's line for job {text}")
            peak = requests.post(f"{b.url}/run/{TOOLS}/peak", json={"text": "?"}, timeout=10)
            assert peak.json() == {"peak": 1}
            streamed = requests.post(f"{b.url}/run/{TOOLS}/stream", json={"text": "b", "n": 1},
                                     timeout=10)
            assert "data: " in streamed.text
            # The owner stops (a worker restarting): the other one starts the app itself.
            first.__exit__(None, None, None)
            first = None
            wait_until(lambda: b.runtime.apps.owner, timeout=15, message="b takes over")
            taken = healthy_state(b)
            assert taken["pid"] != seen_a["pid"]
            answer = requests.post(f"{b.url}/queue/{TOOLS}/slow", json={"text": "x", "n": 1},
                                   timeout=10).json()
            assert wait_status(answer["status_url"]).get("error") is None
    finally:
        if first is not None:
            first.__exit__(None, None, None)
