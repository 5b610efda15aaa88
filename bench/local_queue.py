"""Benchmark of the local runtime's queue, with a zero-delay preview engine.

Prints submit→COMPLETED latency (p50, p95) and jobs/s through the queue, status polls/s,
and, as ratios, the same work against baselines measured in this run: a direct ``POST /run``
(no queue) for latency, and ``GET /healthz`` (the HTTP floor of the server) for polls.

    .venv/bin/python bench/local_queue.py [--jobs 200] [--threads 8] [--seconds 3]
"""

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.testing import ServerThread

INPUT = {"prompt": "bench", "num_inference_steps": 1, "image_size": {"width": 64, "height": 64}}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def hammer(url, seconds, threads):
    """Requests/s of GET ``url`` from ``threads`` keep-alive sessions for ``seconds``."""
    stop = time.monotonic() + seconds
    counts = []

    def loop():
        n = 0
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.get(url, timeout=10)
                n += 1
        counts.append(n)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="falweb-bench-")
    app = create_local_app({"FALWEB_INSTANCE_PATH": folder, "FALWEB_LOCAL_STEP_DELAY": 0.0,
                            "FALWEB_LOCAL_WORKERS": args.workers})
    runtime = runtime_of(app)
    server = ServerThread(app)
    base = server.url
    try:
        with requests.Session() as session:  # warm up
            session.post(f"{base}/run/fal-ai/fast-sdxl", json=INPUT, timeout=30)

        # Baseline: the same input run directly, no queue.
        direct = []
        with requests.Session() as session:
            for _ in range(30):
                t0 = time.perf_counter()
                answer = session.post(f"{base}/run/fal-ai/fast-sdxl", json=INPUT, timeout=30)
                answer.raise_for_status()
                direct.append(time.perf_counter() - t0)

        # Unloaded: one job at a time, so the latency is the queue's own overhead.
        unloaded = []
        with requests.Session() as session:
            for _ in range(30):
                rid = session.post(f"{base}/queue/fal-ai/fast-sdxl", json=INPUT,
                                   timeout=30).json()["request_id"]
                while runtime.queue.get(rid).status != "COMPLETED":
                    time.sleep(0.001)
                job = runtime.queue.get(rid)
                unloaded.append(job.finished_at - job.created_at)

        # Loaded: submit from several threads, then wait for all to complete.
        local = threading.local()

        def submit(_):
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            answer = session.post(f"{base}/queue/fal-ai/fast-sdxl", json=INPUT, timeout=30)
            answer.raise_for_status()
            return answer.json()["request_id"]

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            ids = list(pool.map(submit, range(args.jobs)))
        while runtime.queue.counts()["COMPLETED"] < args.jobs + len(unloaded):
            time.sleep(0.005)
        wall = time.perf_counter() - started
        latencies = []
        for rid in ids:
            job = runtime.queue.get(rid)
            latencies.append(job.finished_at - job.created_at)

        # Status polls against healthz, each from the same number of threads.
        status_url = f"{base}/queue/fal-ai/fast-sdxl/requests/{ids[-1]}/status?logs=1"
        polls = hammer(status_url, args.seconds, args.threads)
        floor = hammer(f"{base}/healthz", args.seconds, args.threads)
    finally:
        server.shutdown()
        runtime.close()

    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    d50 = statistics.median(direct)
    u50, u95 = percentile(unloaded, 50), percentile(unloaded, 95)
    jobs_per_s = args.jobs / wall

    def ms(seconds):
        return f"{seconds * 1000:.1f} ms"

    def vs_direct(seconds):
        return f"{seconds / d50:.2f}× direct run p50 ({ms(d50)})"

    rows = [
        ("unloaded submit→COMPLETED p50", ms(u50), vs_direct(u50)),
        ("unloaded submit→COMPLETED p95", ms(u95), vs_direct(u95)),
        ("loaded: jobs", f"{args.jobs} from {args.threads} threads, {args.workers} workers", ""),
        ("loaded submit→COMPLETED p50", ms(p50), vs_direct(p50)),
        ("loaded submit→COMPLETED p95", ms(p95), vs_direct(p95)),
        ("throughput", f"{jobs_per_s:.1f} jobs/s", f"{jobs_per_s * d50:.2f}× one direct caller"),
        ("status polls", f"{polls:.0f} req/s",
         f"{polls / floor:.2f}× GET /healthz ({floor:.0f} req/s)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:<40} {ratio}")


if __name__ == "__main__":
    main()
