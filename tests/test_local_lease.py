"""A worker keeps its job's lease for as long as it runs it, steps or no steps: another
worker on the same queue never starts the job again while the first is still on it."""

import threading
import time

import requests

from falweb.local.db import Database
from falweb.local.engines import outputs
from falweb.local.engines.preview import PreviewEngine
from falweb.local.queue import JobQueue
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until

LEASE = 1.0
SLOW_ENCODE = 2.5  # seconds: well past the lease, with no progress call in between


def test_a_job_longer_than_its_lease_between_steps_runs_once(local_config, monkeypatch):
    runs = []
    lock = threading.Lock()
    run, encode = PreviewEngine.run, outputs.encode

    def counted_run(self, input, ctx):
        with lock:
            runs.append(threading.current_thread().name)
        return run(self, input, ctx)

    def slow_encode(image, fmt):
        # Encoding (or storing) the outputs of a big job: no step, so no progress call.
        time.sleep(SLOW_ENCODE)
        return encode(image, fmt)

    monkeypatch.setattr(PreviewEngine, "run", counted_run)
    monkeypatch.setattr(outputs, "encode", slow_encode)
    # Two runtimes, one worker each, on the same instance folder: two processes' worth of
    # workers polling one queue.
    config = local_config | {"FALWEB_LOCAL_LEASE_SECONDS": LEASE, "FALWEB_LOCAL_WORKERS": 1}
    with serve_local_runtime(config) as first, serve_local_runtime(config) as second:
        body = requests.post(f"{first.url}/queue/fal-ai/fast-sdxl",
                             json={"prompt": "slow to encode", "num_inference_steps": 1,
                                   "image_size": "square"}, timeout=10).json()

        def completed_once():
            # Fails at once when a second run starts, rather than waiting the timeout out.
            assert len(runs) <= 1, f"the job ran again while its first run went on: {runs}"
            status = requests.get(body["status_url"], params={"logs": 1}, timeout=10).json()
            return status if status["status"] == "COMPLETED" else None

        final = wait_until(completed_once, timeout=30, message="the job to complete")
        assert "error" not in final, final
        assert not any("previous worker stopped" in line["message"] for line in final["logs"])
        job = first.runtime.queue.get(body["request_id"])
        assert job.attempts == 1
        assert len(runs) == 1, runs
        result = requests.get(body["response_url"], timeout=10)
        assert result.status_code == 200 and len(result.json()["images"]) == 1
        assert second.runtime.queue.get(body["request_id"]).status == "COMPLETED"


def test_renew_extends_only_leases_still_held(tmp_path):
    queue = JobQueue(Database(str(tmp_path / "q.sqlite3")), lease_seconds=LEASE)
    job = queue.submit("fal-ai/fast-sdxl", "fal-ai/fast-sdxl", {"prompt": "x"}, "http://x")
    assert queue.claim("worker-a").request_id == job.request_id

    def expires():
        return queue.db.connect().execute("SELECT lease_expires FROM jobs WHERE request_id = ?",
                                          (job.request_id,)).fetchone()[0]

    claimed = expires()
    assert queue.renew([(job.request_id, "worker-b")]) == 0
    assert expires() == claimed
    time.sleep(0.01)  # a later renewal is a later expiry, whatever the clock's resolution
    assert queue.renew([(job.request_id, "worker-a")]) == 1
    assert expires() > claimed
    assert queue.complete(job.request_id, "worker-a", result={})
    assert queue.renew([(job.request_id, "worker-a")]) == 0
