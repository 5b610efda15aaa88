"""Benchmark of hosted apps: what the runtime adds over calling the app's process directly.

Hosts the example fal apps (``examples/fal_text_to_image.py``, ``examples/fal_realtime.py``;
``--native`` uses ``examples/native_text_to_image.py`` and needs no fal SDK) and measures, in
this run, for a tiny input (32×32, 1 step):

- latency p50/p95 of a direct call to the app's own port (the baseline), of ``POST /run``
  through the runtime, and of the queue (submit → status stream until COMPLETED → result,
  and the same polling the status every 5 ms: the stream itself looks every 50 ms);
- realtime frames/s (send one, await its answer) straight to the app vs through the runtime.

    .venv/bin/python bench/apps.py [--calls 100] [--seconds 3] [--native]
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import msgpack
import requests
import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from falweb.testing import serve_local_runtime  # noqa: E402
from falweb.testing import wait_until  # noqa: E402

INPUT = {"prompt": "bench", "width": 32, "height": 32, "num_inference_steps": 1, "seed": 1}
T2I = "local/text-to-image"
REALTIME = "local/realtime-sketch"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def timed(calls, fn):
    fn()  # warm: first connection, first upload
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def post(port, path, headers=None, fresh=False):
    """POST INPUT to ``path`` with headers and body in one write, on one keep-alive
    connection or (``fresh``) a new one per call.

    The app's own server (uvicorn) answers a second request on a kept-alive connection
    about 40 ms late here (a delayed ACK), and ``requests`` writes headers and body apart,
    which costs the same: the baseline is the fastest way to call the app, a fresh
    connection per call, as the runtime calls it.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps(INPUT).encode()

    def call():
        nonlocal conn
        if fresh:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", path, body=body, headers={
            "content-type": "application/json", **(headers() if headers else {})})
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
    return call


def direct_call(hosted):
    return post(hosted.port, "/", lambda: {**hosted.headers(), "x-fal-endpoint": T2I,
                                           "x-fal-request-id": str(uuid.uuid4())},
                fresh=True)


def run_call(server):
    return post(server.port, f"/run/{T2I}")


def queue_call(session, base):
    def call():
        submitted = session.post(f"{base}/queue/{T2I}", json=INPUT, timeout=30).json()
        with session.get(submitted["status_url"] + "/stream", stream=True, timeout=30) as sse:
            for line in sse.iter_lines():
                if line.startswith(b"data:") and b'"COMPLETED"' in line:
                    break
        session.get(submitted["response_url"], timeout=30).raise_for_status()
    return call


def queue_polled(session, base, interval=0.005):
    def call():
        submitted = session.post(f"{base}/queue/{T2I}", json=INPUT, timeout=30).json()
        while session.get(submitted["status_url"], timeout=30).status_code != 200:
            time.sleep(interval)
        session.get(submitted["response_url"], timeout=30).raise_for_status()
    return call


def frames_per_second(url, headers, seconds):
    ws = websocket.create_connection(url, header=headers, timeout=30)
    try:
        frame = msgpack.packb({"prompt": "rt", "seed": 0, "size": 16})
        ws.send_binary(frame)
        ws.recv()
        count = 0
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            ws.send_binary(frame)
            while not isinstance(ws.recv(), bytes):  # skip text (timings) frames
                pass
            count += 1
        return count / seconds
    finally:
        ws.close()


def describe(name, samples, base=None):
    p50, p95 = statistics.median(samples), percentile(samples, 95)
    line = f"{name:<24} p50 {p50 * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms"
    if base is not None:
        line += (f"  ×{p50 / statistics.median(base):5.2f} p50"
                 f"  ×{p95 / percentile(base, 95):5.2f} p95 of direct")
    print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--venv", default=os.path.join(ROOT, ".venv-falapps"))
    args = parser.parse_args()
    if not args.native and not os.path.exists(os.path.join(args.venv, "bin", "python")):
        print(f"bench/apps.py: no fal SDK virtualenv at {args.venv} (scripts/test-setup.sh "
              "makes it); measuring the native app instead")
        args.native = True
    examples = os.path.join(ROOT, "examples")
    apps = ([f"{examples}/native_text_to_image.py::TextToImage"] if args.native else
            [f"{examples}/fal_text_to_image.py::TextToImage",
             f"{examples}/fal_realtime.py::RealtimeSketch"])
    config = {"FALWEB_INSTANCE_PATH": tempfile.mkdtemp(prefix="falweb-bench-apps-"),
              "FALWEB_LOCAL_WORKERS": 2, "FALWEB_APPS": apps, "FALWEB_APPS_VENV": args.venv}
    with serve_local_runtime(config) as server:
        hosted_apps = server.runtime.apps
        wait_until(lambda: all(a["state"] == "healthy" for a in hosted_apps.state()),
                   timeout=120, message=lambda: json.dumps(hosted_apps.state()))
        hosted = hosted_apps.by_id[T2I]
        print(f"{'native' if args.native else 'fal'} apps, {args.calls} calls each, "
              f"{os.cpu_count()} CPUs")
        base = timed(args.calls, direct_call(hosted))
        run = timed(args.calls, run_call(server))
        with requests.Session() as session:
            queued = timed(args.calls, queue_call(session, server.url))
            polled = timed(args.calls, queue_polled(session, server.url))
        describe("direct to the app", base)
        describe("runtime POST /run", run, base)
        describe("queue, status stream", queued, base)
        describe("queue, polled / 5 ms", polled, base)
        if REALTIME in hosted_apps.by_id:
            rt = hosted_apps.by_id[REALTIME]
            direct = frames_per_second(f"ws://127.0.0.1:{rt.port}/realtime",
                                       rt.headers(), args.seconds)
            through = frames_per_second(
                server.url.replace("http", "ws") + f"/run/{REALTIME}/realtime", {},
                args.seconds)
            print(f"realtime frames/s        direct {direct:7.1f}  through the runtime "
                  f"{through:7.1f}  (×{through / direct:4.2f})")


if __name__ == "__main__":
    main()
