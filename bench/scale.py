"""Benchmark of the runtime beyond one process: PostgreSQL against SQLite, in one run.

Each phase serves the runtime's API in this process (no job threads) and runs jobs in
separate ``falweb local --workers-only`` processes, as GPU boxes would; SQLite phases share
one instance folder, PostgreSQL phases one database (a throwaway cluster started here) and
one S3 bucket (moto's emulator). Prints, for both backends:

- queue throughput: jobs/s of zero-work jobs through 2 worker processes (the queue's own
  cost: submit, claim, complete), the median of ``--rounds`` rounds that alternate the
  backends;
- status-stream latency: from a job's completion (its ``finished_at``) to the SSE client
  reading COMPLETED (SQLite streams look every 50 ms; PostgreSQL's are woken by NOTIFY);
- scaling: jobs/s of jobs that each take ``--job-ms`` (engine time, as a GPU would spend
  it) with 1, 2, 3 and 4 worker processes of one job thread each.

    .venv/bin/python bench/scale.py [--jobs 200] [--scale-jobs 80] [--job-ms 100]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.store.testing import fresh_database
from falweb.store.testing import postgres_cluster
from falweb.store.testing import s3_server
from falweb.testing import ServerThread

SIZE = {"width": 64, "height": 64}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


class Backend:
    """Settings of a fresh store on one backend (a new folder; a new database and bucket)."""

    def __init__(self, name, cluster=None, s3=None):
        self.name = name
        self.cluster = cluster
        self.s3 = s3

    def config(self):
        folder = tempfile.mkdtemp(prefix=f"falweb-scale-{self.name}-")
        config = {"FALWEB_INSTANCE_PATH": folder}
        if self.name != "sqlite":
            config |= {"FALWEB_DATABASE_URL": fresh_database(self.cluster)}
        if self.name == "postgres+s3":
            config |= {"FALWEB_STORAGE_URL": f"s3://{self.s3.bucket()}/bench",
                       "FALWEB_S3_ENDPOINT_URL": self.s3.endpoint}
        return config


class Phase:
    """The API in this process and ``workers`` worker processes on one fresh store."""

    def __init__(self, backend, workers, step_delay):
        self.store = backend.config()
        env = {**os.environ, **{k: str(v) for k, v in self.store.items()},
               "FALWEB_LOCAL_STEP_DELAY": str(step_delay), "PYTHONWARNINGS": "ignore"}
        if backend.s3 is not None:
            env |= backend.s3.environ
        self.app = create_local_app(self.store | {"FALWEB_LOCAL_WORKERS": 0,
                                                  "FALWEB_LOCAL_STEP_DELAY": step_delay})
        self.runtime = runtime_of(self.app)
        self.server = ServerThread(self.app)
        self.url = self.server.url
        self.procs = []
        for _ in range(workers):
            proc = subprocess.Popen(
                [sys.executable, "-m", "falweb.cli", "local", "--workers-only", "--workers",
                 "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.procs.append(proc)
        for proc in self.procs:
            line = proc.stdout.readline()
            if "local workers" not in line:
                raise SystemExit(f"a worker process did not start: {line!r}")

    def close(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)
            proc.stdout.close()
        self.server.shutdown()
        self.runtime.close()

    def throughput(self, jobs, steps, threads=8):
        """Jobs/s from the first submit to the last completion."""
        local = threading.local()
        body = {"prompt": "bench", "num_inference_steps": steps, "image_size": SIZE}

        def submit(_):
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            answer = session.post(f"{self.url}/queue/fal-ai/fast-sdxl", json=body,
                                  timeout=60)
            answer.raise_for_status()

        done_before = self.runtime.queue.counts()["COMPLETED"]
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(submit, range(jobs)))
        while self.runtime.queue.counts()["COMPLETED"] < done_before + jobs:
            time.sleep(0.005)
        return jobs / (time.perf_counter() - started)

    def stream_latency(self, samples):
        """Seconds from each job's completion to its stream's COMPLETED event."""
        latencies = []
        body = {"prompt": "bench", "num_inference_steps": 2, "image_size": SIZE}
        with requests.Session() as session:
            for _ in range(samples):
                rid = session.post(f"{self.url}/queue/fal-ai/fast-sdxl", json=body,
                                   timeout=60).json()["request_id"]
                with session.get(f"{self.url}/queue/fal-ai/fast-sdxl/requests/{rid}/status"
                                 "/stream", stream=True, timeout=60) as stream:
                    for line in stream.iter_lines(decode_unicode=True):
                        if line.startswith("data:") and \
                                json.loads(line[5:])["status"] == "COMPLETED":
                            received = time.time()
                            break
                latencies.append(received - self.runtime.queue.get(rid).finished_at)
        return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="zero-work jobs per backend")
    parser.add_argument("--scale-jobs", type=int, default=80,
                        help="jobs per worker count in the scaling runs")
    parser.add_argument("--job-ms", type=float, default=100.0,
                        help="engine time of one job in the scaling runs")
    parser.add_argument("--streams", type=int, default=40, help="stream latency samples")
    parser.add_argument("--rounds", type=int, default=3,
                        help="zero-work throughput rounds per backend (median kept)")
    args = parser.parse_args()

    results = {}
    with postgres_cluster() as cluster, s3_server() as s3:
        os.environ.update(s3.environ)
        # PostgreSQL with the files in the (shared) folder separates the database's cost
        # from the object store's (here moto, a Python server on the same cores).
        backends = [Backend("sqlite"), Backend("postgres", cluster),
                    Backend("postgres+s3", cluster, s3)]
        # Zero-work runs are short, so the load of whatever else runs on this machine shows:
        # rounds alternate the backends, and each backend's median is kept.
        rounds = {}
        for _ in range(args.rounds):
            for backend in backends:
                phase = Phase(backend, workers=2, step_delay=0.0)
                try:
                    phase.throughput(10, 1)  # warm up: imports, connections, first files
                    rounds.setdefault(backend.name, []).append(phase.throughput(args.jobs, 1))
                finally:
                    phase.close()
        for name, values in rounds.items():
            results[(name, "queue")] = statistics.median(values)
        for backend in backends:
            phase = Phase(backend, workers=1, step_delay=0.01)
            try:
                results[(backend.name, "stream")] = phase.stream_latency(args.streams)
            finally:
                phase.close()
            steps = 4
            for workers in (1, 2, 3, 4):
                phase = Phase(backend, workers=workers,
                              step_delay=args.job_ms / 1000 / steps)
                try:
                    phase.throughput(workers, steps)  # every process has claimed once
                    results[(backend.name, workers)] = phase.throughput(args.scale_jobs, steps)
                finally:
                    phase.close()

    def ms(seconds):
        return f"{seconds * 1000:.1f} ms"

    names = [backend.name for backend in backends]
    rows = [("", *names)]

    def add_row(label, key, show, relative=True):
        base = results[("sqlite", key)]
        cells = [show(results[(name, key)]) + (f" ({results[(name, key)] / base:.2f}×)"
                                                if relative and name != "sqlite" else "")
                 for name in names]
        rows.append((label, *cells))

    add_row(f"queue: zero-work jobs/s, 2 worker processes (median of {args.rounds})", "queue",
            lambda v: f"{v:.1f}")
    for q in (50, 95):
        results.update({(name, f"p{q}"): percentile(results[(name, "stream")], q)
                        for name in names})
        add_row(f"status stream: completion→event p{q}", f"p{q}", ms)
    results.update({(name, "mean"): statistics.mean(results[(name, "stream")])
                    for name in names})
    add_row("status stream: completion→event mean", "mean", ms)
    for workers in (1, 2, 3, 4):
        results.update({(name, f"x{workers}"): results[(name, workers)] / results[(name, 1)]
                        for name in names})
        add_row(f"{args.job_ms:.0f} ms jobs: jobs/s, {workers} worker process(es)", workers,
            lambda v: f"{v:.1f}")
        add_row("  growth over 1 worker process", f"x{workers}", lambda v: f"{v:.2f}×",
            relative=False)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"machine: {os.cpu_count()} cores; one job thread per worker process")
    for row in rows:
        print("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
