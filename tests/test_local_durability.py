"""Nothing is lost when the runtime's process dies: queued jobs stay queued, a job whose
worker died runs again once its lease expires, and each job completes exactly once."""

import collections
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from flask import Flask
from flask import request as flask_request

from falweb import history
from falweb.local import runtime_of
from falweb.testing import ServerThread
from falweb.testing import serve_app
from falweb.testing import wait_until
from tests.local_helpers import wait_status


def start_runtime(instance, extra_env=None):
    env = os.environ.copy()
    for key in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        env.pop(key, None)
    env.update({"FALWEB_INSTANCE_PATH": str(instance), "FALWEB_LOCAL_LEASE_SECONDS": "1",
                "FALWEB_LOCAL_STEP_DELAY": "0.1", "FALWEB_LOCAL_WORKERS": "1",
                "PYTHONUNBUFFERED": "1"} | (extra_env or {}))
    # Output goes to a file, not a pipe: a pipe nobody drains would block the child.
    log = instance / f"runtime-{time.monotonic_ns()}.log"
    instance.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "falweb.cli", "local", "--port", "0"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)

    def started():
        if "local runtime on" in log.read_text():
            return True
        assert proc.poll() is None, log.read_text()  # it died: no use waiting
        return False

    wait_until(started, timeout=30, interval=0.05,
               message=lambda: f"the runtime to start:\n{log.read_text()}")
    line = next(x for x in log.read_text().splitlines() if "local runtime on" in x)
    return proc, line.split(" on ", 1)[1].strip().rstrip("/")


@pytest.fixture
def hook():
    """A webhook receiver that counts deliveries per request id."""
    counts = collections.Counter()
    app = Flask("hook")

    @app.post("/hook")
    def receive():
        counts[json.loads(flask_request.get_data())["request_id"]] += 1
        return "", 200

    with ServerThread(app) as server:
        server.counts = counts
        yield server


@pytest.mark.slow
def test_killed_worker_job_completes_exactly_once_after_restart(tmp_path, hook):
    # The receiver is on loopback: allowed in the first process only; the job carries
    # that decision to the process that delivers it after the restart.
    first, url = start_runtime(tmp_path, {"FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS": hook.url + "/hook"})
    try:
        running = requests.post(f"{url}/queue/fal-ai/fast-sdxl",
                                params={"fal_webhook": hook.url + "/hook"},
                                json={"prompt": "survivor", "num_inference_steps": 20,
                                      "image_size": "square"}, timeout=10).json()
        queued = requests.post(f"{url}/queue/fal-ai/fast-sdxl",
                               json={"prompt": "waiting", "num_inference_steps": 2,
                                     "image_size": "square"}, timeout=10).json()

        def a_few_steps_in():
            status = requests.get(running["status_url"], params={"logs": 1}, timeout=10).json()
            return status["status"] == "IN_PROGRESS" and len(status["logs"]) >= 4

        wait_until(a_few_steps_in, timeout=20, interval=0.05,
                   message="the first job to be a few steps in")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)

    second, url2 = start_runtime(tmp_path)
    try:
        def moved(status_url):
            return status_url.replace(url, url2)

        # the queued job is still there, unharmed
        assert requests.get(moved(queued["status_url"]), timeout=10).json()["status"] in (
            "IN_QUEUE", "IN_PROGRESS", "COMPLETED")
        done = wait_status(moved(running["status_url"]), timeout=60)
        assert "error" not in done
        messages = [log["message"] for log in done["logs"]]
        assert any("previous worker stopped" in m for m in messages)
        result = requests.get(moved(running["response_url"]), timeout=10)
        assert result.status_code == 200 and result.json()["prompt"] == "survivor"
        assert wait_status(moved(queued["status_url"]), timeout=30)["status"] == "COMPLETED"
        wait_until(lambda: hook.counts[running["request_id"]], timeout=15, interval=0.1,
                   message="the webhook delivery")
        time.sleep(1.5)  # room for a duplicate to show up, if one were coming
        assert hook.counts[running["request_id"]] == 1
    finally:
        second.terminate()
        second.wait(10)


@pytest.mark.slow
def test_queued_jobs_survive_a_runtime_with_no_workers(tmp_path):
    idle, url = start_runtime(tmp_path, {"FALWEB_LOCAL_WORKERS": "0"})
    try:
        ids = [requests.post(f"{url}/queue/fal-ai/fast-sdxl", json={"prompt": f"p{i}",
               "num_inference_steps": 1, "image_size": "square"}, timeout=10).json()
               for i in range(3)]
    finally:
        idle.send_signal(signal.SIGKILL)
        idle.wait(10)
    worker, url2 = start_runtime(tmp_path, {"FALWEB_LOCAL_STEP_DELAY": "0"})
    try:
        for body in ids:
            final = wait_status(body["status_url"].replace(url, url2), timeout=30)
            assert "error" not in final
    finally:
        worker.terminate()
        worker.wait(10)


def test_closing_the_runtime_puts_running_jobs_back_in_the_queue(local_config):
    from falweb.local import create_local_app

    config = local_config | {"FALWEB_LOCAL_STEP_DELAY": 0.05, "FALWEB_LOCAL_WORKERS": 1}
    app = create_local_app(config)
    with ServerThread(app) as server:
        body = requests.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                             json={"prompt": "interrupted", "num_inference_steps": 50,
                                   "image_size": "square"}, timeout=10).json()
        wait_status(body["status_url"], "IN_PROGRESS")
        runtime_of(app).close()
    again = create_local_app(config | {"FALWEB_LOCAL_WORKERS": 0})
    runtime = runtime_of(again)
    job = runtime.queue.get(body["request_id"])
    assert job.status == "IN_QUEUE"
    assert "went back to the queue" in runtime.queue.logs(body["request_id"])[-1]["message"]
    runtime.close()


class _HeldWebhooks:
    """WSGI middleware in front of the app's webhook receiver: records each delivery's
    request id, body and answer, and holds the first one until ``release`` is set (a
    receiver that is slow while its sender dies)."""

    def __init__(self, app):
        self.app = app
        self.deliveries, self.answers = [], []
        self.first_arrived, self.release = threading.Event(), threading.Event()

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] != "/webhooks/fal":
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["wsgi.input"] = io.BytesIO(body)
        self.deliveries.append((environ["HTTP_X_FAL_WEBHOOK_REQUEST_ID"], body))
        if len(self.deliveries) == 1:
            self.first_arrived.set()
            self.release.wait(30)
        answer = b"".join(self.app(environ, start_response))
        self.answers.append(json.loads(answer))
        return [answer]


@pytest.mark.slow
def test_a_delivery_cut_off_by_a_killed_sender_is_sent_again_and_applied_once(tmp_path):
    # The sender dies while the receiver is still working on a delivery: it never learns
    # that the delivery arrived, so the next process sends it again. The copy carries the
    # same request id (the idempotency key) and body, and falweb's receiver applies it once.
    timeout = {"FALWEB_LOCAL_WEBHOOK_TIMEOUT": "2"}
    instance = tmp_path / "runtime"
    first = second = None
    # The app first, for its URL (the runtime must allow it); then the runtime it uses.
    with serve_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "app"),
                    "FALWEB_LOCAL_URL": "http://127.0.0.1:9/unset"}) as app:
        try:
            first, url = start_runtime(instance, {
                "FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS": app.url + "/webhooks/", **timeout})
            app.app.config["FALWEB_LOCAL_URL"] = url
            held = app.app.wsgi_app = _HeldWebhooks(app.app.wsgi_app)
            submitted = requests.post(f"{url}/queue/fal-ai/fast-sdxl",
                                      params={"fal_webhook": app.url + "/webhooks/fal"},
                                      json={"prompt": "once", "num_inference_steps": 1,
                                            "image_size": "square"}, timeout=10).json()
            request_id = submitted["request_id"]
            with app.app.app_context():
                history.add(request_id, "fal-ai/fast-sdxl", {"prompt": "once"},
                            backend="local")
            assert held.first_arrived.wait(30), "the first delivery"
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second, url = start_runtime(instance, timeout)
            # The app checks signatures with the keys the runtime serves (the same keys,
            # kept in its instance folder), now at the second one's address.
            app.app.config["FALWEB_LOCAL_URL"] = url
            held.release.set()
            wait_until(lambda: len(held.answers) == 2, timeout=30, interval=0.1,
                       message="the delivery sent again by the next process")
            time.sleep(1)  # room for a third copy, if one were coming
            assert len(held.deliveries) == 2
            assert held.deliveries[0] == held.deliveries[1] and (
                held.deliveries[0][0] == request_id)
            assert [answer["changed"] for answer in held.answers] == [True, False]
            with app.app.app_context():
                row = history.get(request_id)
            assert row["status"] == "COMPLETED" and row["result"]["prompt"] == "once"
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)
