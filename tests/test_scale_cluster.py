"""Several hosts on one PostgreSQL and one bucket (issue 12), as real processes.

Two processes serve the runtime's API (``falweb local``, no job threads) and two only run
jobs (``falweb local --workers-only``); each has its own instance folder, so nothing is
shared but the database and the bucket. One worker is killed with SIGKILL while it holds
jobs: its jobs go to the other worker when their leases run out, and every request
completes once, with one webhook each.
"""

import collections
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

from falweb.store.testing import fresh_database
from falweb.testing import ServerThread
from falweb.testing import wait_until

pytestmark = pytest.mark.slow

JOBS = 200


class Host:
    """One ``falweb local`` process; its output goes to a file, shown when a wait fails."""

    def __init__(self, tmp_path, name, env, *args):
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "falweb.cli", "local", "--port", "0", *args],
            env=env | {"FALWEB_INSTANCE_PATH": str(tmp_path / name)},
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp_path)
        self.url = None

    def output(self):
        return self.log_path.read_text()

    def wait_ready(self, word):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the process exited: {self.output()[-2000:]}")
            for line in self.output().splitlines():
                if word in line:
                    if " on http://" in line:
                        self.url = line.split(" on ", 1)[1].strip().rstrip("/")
                    return True
            return False

        wait_until(ready, timeout=60, message=lambda: f"{word!r} in {self.output()[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def test_two_api_hosts_two_workers_one_killed_every_job_once(tmp_path, pg_cluster,
                                                             s3_emulator):
    received = collections.Counter()
    bodies = {}
    lock = threading.Lock()
    hook = Flask("hook")

    @hook.post("/hook")
    def receive():
        body = json.loads(flask_request.get_data())
        with lock:
            received[body["request_id"]] += 1
            bodies[body["request_id"]] = body
        return "", 204

    with ServerThread(hook) as hook_server:
        env = {**os.environ, **s3_emulator.environ,
               "FALWEB_DATABASE_URL": fresh_database(pg_cluster),
               "FALWEB_STORAGE_URL": f"s3://{s3_emulator.bucket()}/cluster",
               "FALWEB_S3_ENDPOINT_URL": s3_emulator.endpoint,
               "FALWEB_LOCAL_LEASE_SECONDS": "2",
               "FALWEB_LOCAL_STEP_DELAY": "0.03",
               "FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS": hook_server.url + "/hook",
               "PYTHONWARNINGS": "ignore"}
        apis = [Host(tmp_path, f"api{n}", env | {"FALWEB_LOCAL_WORKERS": "0"})
                for n in range(2)]
        workers = [Host(tmp_path, f"worker{n}", env, "--workers-only", "--workers", "2")
                   for n in range(2)]
        try:
            for host in apis:
                host.wait_ready("local runtime on")
            for host in workers:
                host.wait_ready("local workers")
            jobs = []
            session = requests.Session()
            for n in range(JOBS):
                api = apis[n % 2]
                answer = session.post(f"{api.url}/queue/fal-ai/fast-sdxl",
                                      params={"fal_webhook": hook_server.url + "/hook"},
                                      json={"prompt": f"job {n}", "num_inference_steps": 4,
                                            "image_size": "square"}, timeout=30)
                assert answer.status_code == 200, answer.text
                jobs.append(answer.json())

            # Kill a worker while it runs jobs: mid-run, some done, some not.
            wait_until(lambda: len(received) >= JOBS // 4, timeout=120,
                       message=lambda: f"a quarter of the webhooks ({len(received)} came)")
            victim = workers[0]
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(timeout=10)
            killed_at = len(received)
            assert killed_at < JOBS, "every job finished before the kill: nothing was tested"

            wait_until(lambda: len(received) == JOBS, timeout=180,
                       message=lambda: f"every webhook ({len(received)} of {JOBS}); "
                                       f"worker1: {workers[1].output()[-1500:]}")
            time.sleep(1.0)  # a second delivery of any of them would come now
            assert set(received) == {job["request_id"] for job in jobs}
            assert [rid for rid, count in received.items() if count != 1] == []

            rerun = 0
            for n, job in enumerate(jobs):
                # Either host answers for every job, whichever took it.
                other = apis[(n + 1) % 2]
                status = session.get(f"{other.url}/queue/fal-ai/fast-sdxl/requests/"
                                     f"{job['request_id']}/status", params={"logs": 1},
                                     timeout=10).json()
                assert status["status"] == "COMPLETED" and "error" not in status, status
                rerun += any("previous worker stopped" in line["message"]
                             for line in status["logs"])
                result = session.get(job["response_url"], timeout=10).json()
                assert result == bodies[job["request_id"]]["payload"]
            # The killed worker held jobs: they ran again, elsewhere, and completed once.
            assert rerun >= 1
            image = session.get(bodies[jobs[-1]["request_id"]]["payload"]["images"][0]["url"],
                                timeout=10)
            assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
        finally:
            for host in apis + workers:
                host.stop()
