"""Benchmark of falweb's credential proxy against direct calls and fal's official Node proxy.

Everything runs on loopback and stops by itself. Three servers, each its own process:

- upstream: the local runtime under gunicorn (gthread), playing fal's hosts;
- falweb: a bare Flask app with :class:`falweb.proxy.FalProxy`, under gunicorn gthread
  (one worker, like the single Node process), ``FAL_PROXY_UPSTREAM`` = the upstream;
- node: ``@fal-ai/server-proxy`` 1.2.1 on Node's http server (``tests/js/official_proxy.mjs``),
  its ``fetch`` wrapped to send fal's hosts to the same upstream, ``/tokens/`` allowlisted.

Measured, with the same requests against each: latency of sequential queue status polls
(p50, p99, and what each proxy adds over direct), requests/s with concurrent keep-alive
clients, SSE time to first event of ``fal.run/<id>/stream``, and the peak RSS of the falweb
proxy worker (VmHWM) while a 500 MiB body is PUT through it to a storage upload URL.

    .venv/bin/python bench/proxy.py [--seconds 4] [--concurrency 8] [--upload-mib 500]

Needs ``tests/js/node_modules`` (``npm ci`` in ``tests/js``) for the Node column.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from falweb.hosts import Hosts
from falweb.testing import wait_until

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
ROUTE = "/api/fal/proxy"
ENDPOINT = "fal-ai/fast-sdxl"
INPUT = {"prompt": "bench", "num_inference_steps": 2, "image_size": {"width": 64, "height": 64}}
BENCH_KEY = "bench-key-id:bench-key-secret"


# --- Servers (this file re-invoked as `--serve upstream|falweb`) -------------------------------


def serve(kind, port, upstream, instance):
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self):
            options = {
                "bind": f"127.0.0.1:{port}",
                "worker_class": "gthread",
                "workers": 2 if kind == "upstream" else 1,
                "threads": 16,
                "keepalive": 30,
                "loglevel": "warning",
                "accesslog": None,
                "timeout": 120,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            # Built in each worker, after the fork: the runtime's job threads must live there.
            if kind == "upstream":
                from falweb.local import create_local_app

                return create_local_app(
                    {"FALWEB_INSTANCE_PATH": instance, "FALWEB_LOCAL_STEP_DELAY": 0.01}
                )
            return proxy_app(upstream)

    Gunicorn().run()


def proxy_app(upstream):
    import logging

    from flask import Flask

    from falweb.proxy import DEFAULT_ALLOWED_URL_PATTERNS
    from falweb.proxy import FalProxy

    logging.getLogger("falweb.proxy").setLevel(logging.WARNING)  # one line per request is I/O
    app = Flask("bench-proxy")
    app.config.update(
        FAL_KEY=BENCH_KEY,
        FAL_PROXY_UPSTREAM=upstream,
        # Storage upload URLs too, so the 500 MiB PUT can go through the proxy.
        FAL_PROXY_ALLOWED_URL_PATTERNS=[*DEFAULT_ALLOWED_URL_PATTERNS, "v3.fal.media/**"],
        FAL_PROXY_MAX_BODY_BYTES=2 * 1024**3,
    )
    FalProxy(app)
    return app


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port, proc, seconds=30):
    def listening():
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True

    wait_until(listening, timeout=seconds, interval=0.1, ignore=OSError,
               message=f"a server listening on {port}")


def start_python(kind, upstream, instance):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, str(port), upstream or "", instance],
        cwd=ROOT,
        start_new_session=True,
    )
    wait_listening(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def start_node(upstream):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "@fal-ai" / "server-proxy").is_dir():
        return None, None
    proc = subprocess.Popen(
        [node, "official_proxy.mjs", upstream, "0"],
        cwd=JS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its config warnings
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        return None, None
    return proc, f"http://127.0.0.1:{line.split()[1]}"


def stop(proc):
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- Measurements ----------------------------------------------------------------------------


class Target:
    """How to call one canonical fal URL directly (``base`` = upstream) or through a proxy."""

    def __init__(self, name, base, via_proxy):
        self.name = name
        self.base = base
        self.via_proxy = via_proxy

    def request(self, session, method, canonical, hosts, **kwargs):
        if self.via_proxy:
            headers = {"x-fal-target-url": canonical, **kwargs.pop("headers", {})}
            return session.request(method, self.base + ROUTE, headers=headers, **kwargs)
        return session.request(method, hosts.resolve(canonical), **kwargs)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def latency(target, url, hosts, count):
    samples = []
    with requests.Session() as session:
        for i in range(count + 20):
            started = time.perf_counter()
            response = target.request(session, "GET", url, hosts, timeout=10)
            response.content  # noqa: B018 -- reading the body is part of the timing
            if i >= 20:  # warm-up: connections, caches
                samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code in (200, 202), (target.name, response.status_code)
    return percentile(samples, 50), percentile(samples, 99)


def throughput(target, url, hosts, seconds, concurrency):
    stop_at = time.monotonic() + seconds
    counts, errors = [], []

    def loop():
        n = 0
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                response = target.request(session, "GET", url, hosts, timeout=10)
                response.content  # noqa: B018 -- reading the body is part of the work
                if response.status_code not in (200, 202):
                    errors.append(response.status_code)
                n += 1
        counts.append(n)

    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds, len(errors)


def time_to_first_event(target, hosts, count):
    url = f"https://fal.run/{ENDPOINT}/stream"
    samples = []
    with requests.Session() as session:
        for i in range(count + 3):
            started = time.perf_counter()
            with target.request(
                session, "POST", url, hosts, json=INPUT, stream=True, timeout=30
            ) as response:
                assert response.status_code == 200, (target.name, response.status_code)
                for line in response.iter_lines():
                    if line.startswith(b"data:"):
                        break
                elapsed = (time.perf_counter() - started) * 1000
                for _ in response.iter_lines():
                    pass  # let the job finish before the next one
            if i >= 3:
                samples.append(elapsed)
    return statistics.median(samples)


class Zeros:
    """``size`` zero bytes as a file object with a length: streamed, never held whole."""

    def __init__(self, size):
        self.left = size
        self.size = size
        self.block = bytes(1024 * 1024)

    def __len__(self):
        return self.size

    def read(self, n=-1):
        n = min(self.left, len(self.block) if n is None or n < 0 else n)
        self.left -= n
        return self.block[:n] if n < len(self.block) else self.block


def worker_pids(master_pid):
    try:
        path = f"/proc/{master_pid}/task/{master_pid}/children"
        return [int(pid) for pid in Path(path).read_text().split()]
    except OSError:
        return []


def memory_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def upload_through_proxy(proxy_base, upstream, hosts, mib, master_pid):
    initiated = requests.post(
        f"{upstream}/rest/storage/upload/initiate?storage_type=fal-cdn-v3",
        json={"content_type": "application/octet-stream", "file_name": "big.bin"},
        timeout=10,
    ).json()
    canonical = hosts.canonical(initiated["upload_url"])
    (worker,) = worker_pids(master_pid)
    before = memory_kib(worker, "VmRSS")
    started = time.perf_counter()
    response = requests.put(
        proxy_base + ROUTE,
        headers={"x-fal-target-url": canonical, "Content-Type": "application/octet-stream"},
        data=Zeros(mib * 1024 * 1024),
        timeout=300,
    )
    seconds = time.perf_counter() - started
    assert response.status_code == 200, response.text
    peak = memory_kib(worker, "VmHWM")
    size = requests.head(initiated["file_url"], timeout=10).headers.get("Content-Length")
    return before / 1024, peak / 1024, seconds, int(size or 0)


# --- Main ------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--requests", type=int, default=300, help="latency samples per target")
    parser.add_argument("--sse", type=int, default=15, help="SSE samples per target")
    parser.add_argument("--upload-mib", type=int, default=500)
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "PORT", "UPSTREAM", "INSTANCE"))
    args = parser.parse_args()
    if args.serve:
        kind, port, upstream, instance = args.serve
        return serve(kind, int(port), upstream, instance)

    instance = tempfile.mkdtemp(prefix="falweb-bench-proxy-")
    procs = []
    try:
        up_proc, upstream = start_python("upstream", None, instance)
        procs.append(up_proc)
        falweb_proc, falweb_base = start_python("falweb", upstream, instance)
        procs.append(falweb_proc)
        node_proc, node_base = start_node(upstream)
        procs.append(node_proc)
        hosts = Hosts(upstream)

        submitted = requests.post(f"{upstream}/queue/{ENDPOINT}", json=INPUT, timeout=10).json()
        status = f"https://queue.fal.run/{ENDPOINT}/requests/{submitted['request_id']}/status"

        targets = [Target("direct", upstream, False), Target("falweb proxy", falweb_base, True)]
        if node_base:
            targets.append(Target("fal Node proxy", node_base, True))
        else:
            print("(fal's Node proxy skipped: node or tests/js/node_modules missing)")

        rows = {}
        for target in targets:
            p50, p99 = latency(target, status, hosts, args.requests)
            rps, errors = throughput(target, status, hosts, args.seconds, args.concurrency)
            ttfe = time_to_first_event(target, hosts, args.sse)
            rows[target.name] = {"p50": p50, "p99": p99, "rps": rps, "errors": errors, "ttfe": ttfe}

        print(
            f"\nloopback, {os.cpu_count()} CPUs; GET queue status (completed request); "
            f"{args.concurrency} concurrent clients for {args.seconds:g}s\n"
        )
        header = f"{'':16}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}"
        print(header + f"{'req/s':>9}{'errors':>8}{'SSE 1st ms':>12}")
        direct = rows["direct"]
        for name, row in rows.items():
            print(
                f"{name:16}{row['p50']:9.2f}{row['p99']:9.2f}"
                f"{row['p50'] - direct['p50']:9.2f}{row['p99'] - direct['p99']:9.2f}"
                f"{row['rps']:9.0f}{row['errors']:8d}{row['ttfe']:12.1f}"
            )
        falweb = rows["falweb proxy"]
        print(
            f"\nfalweb proxy / direct: req/s x{falweb['rps'] / direct['rps']:.2f}, "
            f"p50 x{falweb['p50'] / direct['p50']:.2f}"
        )
        if "fal Node proxy" in rows:
            node = rows["fal Node proxy"]
            added = (falweb["p50"] - direct["p50"]) / max(node["p50"] - direct["p50"], 1e-9)
            print(
                f"falweb proxy / fal Node proxy: req/s x{falweb['rps'] / node['rps']:.2f}, "
                f"added p50 x{added:.2f}, SSE first event x{falweb['ttfe'] / node['ttfe']:.2f}"
            )

        if args.upload_mib:
            before, peak, seconds, stored = upload_through_proxy(
                falweb_base, upstream, hosts, args.upload_mib, falweb_proc.pid
            )
            print(
                f"\n{args.upload_mib} MiB PUT through the falweb proxy: {seconds:.1f}s "
                f"({args.upload_mib / seconds:.0f} MiB/s), stored {stored / 2**20:.0f} MiB; "
                f"worker RSS {before:.0f} MiB before, peak (VmHWM) {peak:.0f} MiB"
            )
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    main()
