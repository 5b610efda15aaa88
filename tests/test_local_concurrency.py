"""Many callers at once: every submit is kept, queue positions are consistent."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.testing import ServerThread
from tests.local_helpers import wait_status


@pytest.mark.slow
def test_100_submits_from_8_threads(local_config):
    app = create_local_app(local_config | {"FALWEB_LOCAL_WORKERS": 0})
    runtime = runtime_of(app)
    with ServerThread(app) as server, requests.Session() as session:
        def submit(i):
            answer = session.post(f"{server.url}/queue/fal-ai/fast-sdxl",
                                  json={"prompt": f"job {i}", "num_inference_steps": 1,
                                        "image_size": {"width": 64, "height": 64}}, timeout=30)
            assert answer.status_code == 200
            return answer.json()

        with ThreadPoolExecutor(8) as pool:
            submitted = list(pool.map(submit, range(100)))
        # With no worker yet, each submit saw exactly the jobs ahead of it.
        assert sorted(s["queue_position"] for s in submitted) == list(range(100))
        assert len({s["request_id"] for s in submitted}) == 100
        now = {s["request_id"]: session.get(s["status_url"], timeout=10).json()["queue_position"]
               for s in submitted}
        assert sorted(now.values()) == list(range(100))
        for s in submitted:  # the later a job came, the further back it stands
            assert now[s["request_id"]] == s["queue_position"]

        runtime.start(workers=2)
        with ThreadPoolExecutor(8) as pool:
            finals = list(pool.map(lambda s: wait_status(s["status_url"], timeout=120, logs=False),
                                   submitted))
        assert all(f["status"] == "COMPLETED" and "error" not in f for f in finals)
        assert runtime.queue.counts() == {"IN_QUEUE": 0, "IN_PROGRESS": 0, "COMPLETED": 100}
    runtime.close()
