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
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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

    def __init__(self, tmp_path, name, env, *args, command="local"):
        self.log_path = tmp_path / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "falweb.cli", command, "--port", "0", *args],
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
                        self.url = line.split(" on ", 1)[1].split()[0].rstrip("/")
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


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def test_two_app_hosts_two_workers_one_killed_history_everywhere(tmp_path, pg_cluster,
                                                                s3_emulator):
    """The issue's shape: two app hosts (each embeds the runtime's API, no job threads),
    two GPU boxes (``--workers-only``), one database, one bucket. Requests go through the
    apps' forms, as a person sends them; webhooks come back to the app that submitted."""
    import psycopg

    url = fresh_database(pg_cluster)
    env = {**os.environ, **s3_emulator.environ,
           "FALWEB_DATABASE_URL": url,
           "FALWEB_STORAGE_URL": f"s3://{s3_emulator.bucket()}/apps",
           "FALWEB_S3_ENDPOINT_URL": s3_emulator.endpoint,
           "FALWEB_BACKEND": "local",
           "FALWEB_LIMITS_ENABLED": "false",
           "FALWEB_HISTORY_PER_PAGE": str(JOBS + 10),
           "FALWEB_LOCAL_LEASE_SECONDS": "2",
           "FALWEB_LOCAL_STEP_DELAY": "0.03",
           "PYTHONWARNINGS": "ignore"}
    apps = [Host(tmp_path, f"app{n}", env | {"FALWEB_LOCAL_WORKERS": "0"}, command="serve")
            for n in range(2)]
    workers = [Host(tmp_path, f"box{n}", env, "--workers-only", "--workers", "2")
               for n in range(2)]
    db = psycopg.connect(url, autocommit=True)

    def count(sql):
        return db.execute(sql).fetchone()[0]

    try:
        for host in apps:
            host.wait_ready("falweb serving on")
        for host in workers:
            host.wait_ready("local workers")
        sessions = [requests.Session() for _ in apps]

        def person(n):
            # Two people per app, each with their own session, submitting at once.
            app = apps[n % 2]
            with requests.Session() as session:
                token = csrf_of(session.get(f"{app.url}/models/fal-ai/fast-sdxl",
                                            timeout=30).text)
                made = []
                for k in range(JOBS // 4):
                    answer = session.post(
                        f"{app.url}/models/fal-ai/fast-sdxl", allow_redirects=False,
                        data={"prompt": f"request {n}.{k}", "num_inference_steps": "4",
                              "csrf_token": token}, timeout=30)
                    assert answer.status_code == 303, answer.text[-500:]
                    made.append(answer.headers["Location"].rsplit("/", 1)[1])
                return made

        with ThreadPoolExecutor(4) as pool:
            ids = [rid for made in pool.map(person, range(4)) for rid in made]
        assert len(set(ids)) == JOBS

        wait_until(lambda: count("SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED'")
                   >= JOBS // 4, timeout=120, message="a quarter of the jobs to complete")
        workers[0].proc.send_signal(signal.SIGKILL)
        workers[0].proc.wait(timeout=10)
        assert count("SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED'") < JOBS

        wait_until(lambda: count("SELECT COUNT(*) FROM request WHERE status = 'COMPLETED'")
                   == JOBS, timeout=180,
                   message=lambda: "every history row to complete: " + str(count(
                       "SELECT COUNT(*) FROM request WHERE status = 'COMPLETED'")))
        time.sleep(1.0)  # a second delivery of any webhook would come now
        # Every request completed once and its webhook was sent once, by one app host.
        assert count("SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED'") == JOBS
        assert count("SELECT COUNT(*) FROM deliveries WHERE delivered_at IS NOT NULL"
                     " AND attempts = 1") == JOBS
        received = sum(app.output().count('"POST /webhooks/fal HTTP/1.1" 200') for app in apps)
        assert received == JOBS
        # The killed box held jobs: they ran again, on the other box.
        assert count("SELECT COUNT(*) FROM jobs WHERE attempts = 2") >= 1
        assert count("SELECT COUNT(*) FROM jobs WHERE attempts > 2") == 0
        # Each app's history shows every request, whichever app took it.
        for app, session in zip(apps, sessions, strict=True):
            page = session.get(f"{app.url}/history", timeout=30).text
            assert all(request_id in page for request_id in ids)
            finished = session.get(f"{app.url}/requests/{ids[1 - apps.index(app)]}/status",
                                   headers={"HX-Request": "true"}, timeout=30)
            assert finished.status_code == 286
    finally:
        db.close()
        for host in apps + workers:
            host.stop()
