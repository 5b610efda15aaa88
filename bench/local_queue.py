"""Benchmark of the local runtime and the request page under the README's deployment.

The whole app (``wsgi:app``) runs under gunicorn with ``gunicorn.conf.py`` as it is, its
embedded runtime at ``/local`` with a zero-delay preview engine; load comes from
``bench/load.mjs``. Printed, each with the baseline it is measured against in this run:

- jobs/s submit→COMPLETED: ``--jobs`` queue submits from ``--connections`` clients, timed
  until the last one is COMPLETED; against the same number of ``POST /local/run`` calls
  (the same work with no queue);
- status polls/s (``GET .../status?logs=1`` of a completed job) and the request page's
  status partial (``GET /requests/<id>/status`` as htmx polls it, for a request that is
  still queued: a second app whose runtime runs no jobs); against a small static file, the
  floor of a request through the app.

    .venv/bin/python bench/local_queue.py [--jobs 1000] [--rounds 3] [--connections 8] [--seconds 3]
"""

import argparse
import re
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import requests
from benchlib import cpu_seconds
from benchlib import goal
from benchlib import load
from benchlib import start_gunicorn
from benchlib import stop
from benchlib import worker_pids

ENDPOINT = "fal-ai/fast-sdxl"
INPUT = '{"prompt": "bench", "num_inference_steps": 1, "image_size": {"width": 64, "height": 64}}'
JSON = {"Content-Type": "application/json"}
# The cheapest request through the app (a small static file): the floor of the others.
FLOOR = "/static/favicon.svg"


def completed(folder):
    db = sqlite3.connect(Path(folder) / "local" / "runtime.sqlite3", timeout=30)
    try:
        return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'COMPLETED'").fetchone()[0]
    finally:
        db.close()


def jobs_per_second(base, folder, jobs, connections, pids):
    """Submit ``jobs`` jobs from ``connections`` clients and wait until all are COMPLETED:
    (jobs/s, submits answered/s, server CPU ms per job)."""
    before = completed(folder)
    cpu = cpu_seconds(pids)
    started = time.perf_counter()
    result = load(f"{base}/local/queue/{ENDPOINT}", connections, 600, JSON, warmup=0,
                  method="POST", body=INPUT, count=jobs)
    assert result["errors"] == 0 and result["requests"] == jobs, result
    while completed(folder) < before + jobs:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    return jobs / elapsed, result["rps"], (cpu_seconds(pids) - cpu) / jobs * 1000


def run_calls_per_second(base, jobs, connections, pids):
    cpu = cpu_seconds(pids)
    started = time.perf_counter()
    result = load(f"{base}/local/run/{ENDPOINT}", connections, 600, JSON, warmup=0,
                  method="POST", body=INPUT, count=jobs)
    assert result["errors"] == 0, result
    return jobs / (time.perf_counter() - started), (cpu_seconds(pids) - cpu) / jobs * 1000


def submit_from_the_form(base):
    """A request made on the pages, as a person makes it: (its id, the browser's Cookie
    header, which its page's polls then carry)."""
    with requests.Session() as session:
        page = session.get(f"{base}/models/{ENDPOINT}", timeout=30).text
        fields = dict(re.findall(r'name="(csrf_token|submission_token)" value="([^"]*)"', page))
        answer = session.post(
            f"{base}/models/{ENDPOINT}",
            data={**fields, "prompt": "bench", "num_inference_steps": "1"},
            allow_redirects=False, timeout=30,
        )
        assert answer.status_code == 303, (answer.status_code, answer.text[:2000])
        cookie = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
        return answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1], cookie


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --jobs jobs")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="falweb-bench-queue-")
    idle_folder = tempfile.mkdtemp(prefix="falweb-bench-pages-")
    env = {"FALWEB_INSTANCE_PATH": folder, "FALWEB_LOCAL_STEP_DELAY": "0",
           "FALWEB_LIMITS_ENABLED": "false"}
    procs = []
    try:
        proc, base = start_gunicorn("wsgi:app", env)
        procs.append(proc)
        pids = [proc.pid, *worker_pids(proc.pid)]
        # Warm-up: every worker process imports, opens its databases, renders once.
        load(f"{base}/local/queue/{ENDPOINT}", 8, 600, JSON, warmup=0, method="POST",
             body=INPUT, count=50)
        load(f"{base}/local/run/{ENDPOINT}", 8, 600, JSON, warmup=0, method="POST",
             body=INPUT, count=50)

        # Interleaved rounds, medians: one round of each swings by a third on a shared box.
        runs, queued = [], []
        for _ in range(args.rounds):
            runs.append(run_calls_per_second(base, args.jobs, args.connections, pids))
            queued.append(jobs_per_second(base, folder, args.jobs, args.connections, pids))
        run_rate, run_cpu = (statistics.median(r[i] for r in runs) for i in range(2))
        jobs_rate, submit_rate, job_cpu = (statistics.median(q[i] for q in queued)
                                           for i in range(3))
        done = requests.post(f"{base}/local/queue/{ENDPOINT}", data=INPUT, headers=JSON,
                             timeout=30).json()
        while requests.get(done["status_url"], timeout=30).status_code != 200:
            time.sleep(0.01)
        status_url = done["status_url"] + "?logs=1"

        # A second app (its own folder) whose runtime runs nothing: its requests stay
        # queued, so the request page keeps polling as it does while a job waits or runs.
        idle, idle_base = start_gunicorn("wsgi:app", {
            **env, "FALWEB_INSTANCE_PATH": idle_folder, "FALWEB_LOCAL_WORKERS": "0"})
        procs.append(idle)
        idle_pids = [idle.pid, *worker_pids(idle.pid)]
        request_id, cookie = submit_from_the_form(idle_base)
        partial_url = f"{idle_base}/requests/{request_id}/status"
        htmx = {"HX-Request": "true", "Cookie": cookie}

        rounds = {"polls": [], "floor": [], "partial": [], "idle floor": []}
        for _ in range(3):  # interleaved, so that the machine's noise falls on all alike
            rounds["polls"].append(load(status_url, args.connections, args.seconds,
                                        server_pids=pids, expect=[200]))
            rounds["floor"].append(load(f"{base}{FLOOR}", args.connections, args.seconds,
                                          server_pids=pids))
            rounds["partial"].append(load(partial_url, args.connections, args.seconds, htmx,
                                          server_pids=idle_pids))
            rounds["idle floor"].append(load(f"{idle_base}{FLOOR}", args.connections,
                                               args.seconds, server_pids=idle_pids))
        for name, runs in rounds.items():
            assert all(r["errors"] == 0 for r in runs), (name, runs)

        def best(name, key="rps"):
            values = sorted(r[key] for r in rounds[name])
            return values[len(values) // 2]
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(idle_folder, ignore_errors=True)

    polls, floor, partial, idle_floor = (best(n) for n in rounds)
    floor_name = f"GET {FLOOR}"
    print(f"\nlocal runtime and pages under gunicorn.conf.py; {args.connections} clients; "
          f"jobs/s medians of {args.rounds} rounds of {args.jobs} jobs, req/s medians of 3 "
          f"interleaved rounds of {args.seconds:g}s")
    print(f"  (submits answered at {submit_rate:.0f} req/s; server CPU per job {job_cpu:.2f} ms,"
          f" per /local/run call {run_cpu:.2f} ms; CPU µs per request: polls "
          f"{best('polls', 'cpu_us'):.0f}, partial {best('partial', 'cpu_us'):.0f}, "
          f"static file {best('floor', 'cpu_us'):.0f})")
    print("\ngoals (against a baseline measured in this run):")
    goal("jobs/s submit→COMPLETED", f"{jobs_rate:.0f} jobs/s",
         f"{jobs_rate / run_rate:.2f}× POST /local/run", f"({run_rate:.0f} runs/s; goal ≥ 500)",
         jobs_rate >= 500)
    goal("status polls/s", f"{polls:.0f} req/s", f"{polls / floor:.2f}× {floor_name}",
         f"({floor:.0f} req/s; goal ≥ 2,000)", polls >= 2000)
    goal("request page status partial", f"{partial:.0f} req/s",
         f"{partial / idle_floor:.2f}× {floor_name}", f"({idle_floor:.0f} req/s; goal ≥ 1,000)",
         partial >= 1000)


if __name__ == "__main__":
    main()
