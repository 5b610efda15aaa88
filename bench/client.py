"""fal's official Python client (``fal-client``) and falweb's, side by side in one run
against one local runtime.

- **Completion-notice latency of subscribe**: from the moment the runtime marks a job
  finished (its ``finished_at``) to the moment ``subscribe`` returns the output, for jobs of
  a few steps. fal's client only polls; falweb's polls or reads the status stream. Polling
  is measured at each client's default interval (fal 0.1 s, falweb 0.5 s, the JS client's)
  and at one equal interval.
- **Upload throughput of a 200 MiB file** (both go multipart above ~90-100 MiB); each upload
  is read back and its digest checked, outside the timing. Then the same data as bytes,
  untimed: how much of it arrives with each client.

Printed as ratios of fal's figure to falweb's (> 1: falweb is faster), with the absolute
numbers beside them. fal's client is pointed at the runtime by its module URL constants
(it has no host option; fal-protocol §13.2).

    .venv/bin/python bench/client.py [--runs 15] [--interval 0.1] [--mib 200] [--upload-rounds 3]
"""

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time

import requests

from falweb.client import AsyncClient
from falweb.client import FalClient
from falweb.hosts import Hosts
from falweb.testing import serve_local_runtime

ENDPOINT = "fal-ai/fast-sdxl"
INPUT = {"prompt": "bench", "num_inference_steps": 4, "image_size": {"width": 64, "height": 64}}


def fal_client_for(base):
    """fal's sync and async clients, their hosts rewritten to the runtime at ``base``."""
    import fal_client
    import fal_client.client as module

    module.RUN_URL_FORMAT = f"{base}/run/"
    module.QUEUE_URL_FORMAT = f"{base}/queue/"
    module.REST_URL = f"{base}/rest"
    module.CDN_URL = f"{base}/cdn"
    return fal_client.SyncClient(key="bench-key"), fal_client.AsyncClient(key="bench-key")


def notice_latency(runtime, subscribe, runs):
    """Seconds from the job's completion to ``subscribe()`` returning, per run (median)."""
    latencies = []
    for _ in range(runs):
        enqueued = []
        subscribe(enqueued.append)
        returned = time.time()
        job = runtime.queue.get(enqueued[0])
        latencies.append(returned - job.finished_at)
    return statistics.median(latencies)


def upload_seconds(upload, path):
    started = time.perf_counter()
    url = upload(path)
    return time.perf_counter() - started, url


def digest_of(url):
    digest = hashlib.sha256()
    with requests.get(url, stream=True, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def row(name, fal_value, falweb_value, unit):
    ratio = fal_value / falweb_value if falweb_value else float("inf")
    print(f"  {name:<44} fal {fal_value * 1000 if unit == 'ms' else fal_value:9.1f} {unit}"
          f"   falweb {falweb_value * 1000 if unit == 'ms' else falweb_value:9.1f} {unit}"
          f"   fal/falweb {ratio:5.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--interval", type=float, default=0.1,
                        help="the equal poll interval for the like-for-like row")
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--step-delay", type=float, default=0.03)
    parser.add_argument("--upload-rounds", type=int, default=3)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="falweb-bench-client-")
    config = {"TESTING": True, "FALWEB_INSTANCE_PATH": os.path.join(folder, "runtime"),
              "FALWEB_LOCAL_STEP_DELAY": args.step_delay, "FALWEB_LOCAL_WORKERS": 1}
    with serve_local_runtime(config) as server:
        runtime = server.runtime
        fal_sync, fal_async = fal_client_for(server.url)
        falweb = FalClient(hosts=Hosts(server.url), timeout=300)
        loop = asyncio.new_event_loop()
        falweb_async = AsyncClient(hosts=Hosts(server.url), timeout=300)
        try:
            print(f"subscribe completion-notice latency, median of {args.runs} jobs "
                  f"({INPUT['num_inference_steps']} steps x {args.step_delay} s):")

            def fal_subscribe(interval=None):
                options = {} if interval is None else {"interval": interval}
                return lambda on_enqueue: fal_sync.subscribe(
                    ENDPOINT, INPUT, on_enqueue=on_enqueue, **options)

            def falweb_subscribe(mode, interval=None):
                return lambda on_enqueue: falweb.subscribe(
                    ENDPOINT, INPUT, on_enqueue=on_enqueue, mode=mode, poll_interval=interval)

            fal_default = notice_latency(runtime, fal_subscribe(), args.runs)
            fal_equal = notice_latency(runtime, fal_subscribe(args.interval), args.runs)
            ours_default = notice_latency(runtime, falweb_subscribe("polling"), args.runs)
            ours_equal = notice_latency(runtime, falweb_subscribe("polling", args.interval),
                                        args.runs)
            ours_stream = notice_latency(runtime, falweb_subscribe("streaming"), args.runs)

            def async_subscribe(on_enqueue):
                return loop.run_until_complete(falweb_async.subscribe(
                    ENDPOINT, INPUT, on_enqueue=on_enqueue, mode="streaming"))

            ours_async_stream = notice_latency(runtime, async_subscribe, args.runs)
            row("polling, each at its default interval", fal_default, ours_default, "ms")
            row(f"polling, both every {args.interval} s", fal_equal, ours_equal, "ms")
            row("fal polling (default) vs falweb streaming", fal_default, ours_stream, "ms")
            row("fal polling (default) vs falweb async streaming", fal_default,
                ours_async_stream, "ms")

            path = os.path.join(folder, "upload.bin")
            digest = hashlib.sha256()
            block = os.urandom(1024 * 1024)
            with open(path, "wb") as f:
                for i in range(args.mib):
                    chunk = i.to_bytes(4, "big") + block[4:]
                    digest.update(chunk)
                    f.write(chunk)
            expected = digest.hexdigest()
            print(f"\nupload of a {args.mib} MiB file, MiB/s, best of {args.upload_rounds} "
                  "(the best of each read back and checked):")
            uploads = {
                "fal sync": fal_sync.upload_file,
                "falweb sync": falweb.storage.upload,
                "fal async": lambda p: loop.run_until_complete(fal_async.upload_file(p)),
                "falweb async": lambda p: loop.run_until_complete(falweb_async.storage.upload(p)),
            }
            # Interleaved rounds, the best of each: this machine is shared, and a neighbour's
            # burst should not decide a ratio.
            results = {}
            for _ in range(args.upload_rounds):
                for name, upload in uploads.items():
                    seconds, url = upload_seconds(upload, path)
                    if name not in results or seconds < results[name][0]:
                        results[name] = (seconds, url)
            speed = {name: args.mib / seconds for name, (seconds, _) in results.items()}
            for name, (_, url) in results.items():
                if digest_of(url) != expected:
                    print(f"  !! {name}: the uploaded file differs from the original")
            for kind in ("sync", "async"):
                ratio = speed[f"falweb {kind}"] / speed[f"fal {kind}"]
                print(f"  {kind:<6} fal {speed[f'fal {kind}']:7.1f} MiB/s   falweb "
                      f"{speed[f'falweb {kind}']:7.1f} MiB/s   falweb/fal {ratio:5.2f}x")

            # The same file as bytes in memory: what arrives (fal-ai/fal#1146).
            with open(path, "rb") as f:
                data = f.read()
            print(f"\nupload of the same {args.mib} MiB as bytes, what arrives:")
            for name, upload in (("fal sync", fal_sync.upload),
                                 ("falweb sync", falweb.storage.upload)):
                url = upload(data, "application/octet-stream")
                arrived = len(requests.get(url, timeout=120).content) / (1024 * 1024)
                print(f"  {name:<12} {arrived:7.1f} MiB of {args.mib}"
                      f"{'' if digest_of(url) == expected else '  (differs from the original)'}")
        finally:
            falweb.close()
            loop.run_until_complete(falweb_async.aclose())
            loop.close()
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
