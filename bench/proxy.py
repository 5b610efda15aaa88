"""Benchmark of falweb's credential proxy against fal's official Node proxy, on one upstream.

Everything runs on loopback and stops by itself. Four servers, each its own process:

- upstream: a trivial Node http server (``bench/upstream.mjs``) playing fal's hosts, so the
  figures are the proxies' own cost, not a backend's;
- node: fal's official ``@fal-ai/server-proxy`` 1.2.1 on Node's http server
  (``tests/js/official_proxy.mjs``), its ``fetch`` sending fal's hosts to the upstream;
- falweb: a bare Flask app with :class:`falweb.proxy.FalProxy` (the piece people embed) under
  the deployment the README recommends: gunicorn with ``gunicorn.conf.py`` as it is
  (falweb's gthread worker, threads, no access log), ``FAL_PROXY_UPSTREAM`` = the upstream;
- the whole falweb app (``wsgi:app``, same deployment, ``FALWEB_LOCAL_URL`` = the upstream,
  rate limits off): the proxy behind the app's access control and ownership checks;
- a bare Flask app answering the same body itself, under the same deployment: what
  gunicorn and Flask cost before any proxying (the CPU column then splits falweb's cost
  into the server's and the proxy's own);
- the upstream called directly: the floor.

Load comes from ``bench/load.mjs`` (keep-alive connections in one Node process, cheaper than
any Python client), in rounds that interleave the targets, so that the machine's noise falls
on all of them alike; each figure is the median over rounds. Printed: req/s and p50 with
``--connections`` concurrent clients, p50 of one sequential client (what a proxy adds to a
request), the ratios falweb / Node proxy, falweb's added p50 over direct, SSE time to first
event, and the falweb worker's peak RSS (VmHWM) while ``--upload-mib`` MiB are PUT through it.

    .venv/bin/python bench/proxy.py [--rounds 3] [--seconds 3] [--connections 8]

Needs ``node`` and ``tests/js/node_modules`` (``npm ci`` in ``tests/js``).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import requests
from benchlib import BENCH
from benchlib import ROOT
from benchlib import goal
from benchlib import load
from benchlib import memory_kib
from benchlib import start_gunicorn
from benchlib import start_node
from benchlib import stop
from benchlib import worker_pids

from falweb.hosts import Hosts

JS_DIR = ROOT / "tests" / "js"
ROUTE = "/api/fal/proxy"
ENDPOINT = "fal-ai/fast-sdxl"
STATUS = f"https://queue.fal.run/{ENDPOINT}/requests/0193b1d2-bench/status"
BENCH_KEY = "bench-key-id:bench-key-secret"


# --- The falweb app (gunicorn imports this file as `proxy` and calls proxy_app()) -------------


def proxy_app(upstream=None):
    from flask import Flask

    from falweb.proxy import DEFAULT_ALLOWED_URL_PATTERNS
    from falweb.proxy import FalProxy

    app = Flask("bench-proxy")
    app.config.update(
        FAL_KEY=BENCH_KEY,
        FAL_PROXY_UPSTREAM=upstream or os.environ["BENCH_UPSTREAM"],
        # Storage upload URLs too, so the big PUT can go through the proxy.
        FAL_PROXY_ALLOWED_URL_PATTERNS=[*DEFAULT_ALLOWED_URL_PATTERNS, "v3.fal.media/**"],
        FAL_PROXY_MAX_BODY_BYTES=2 * 1024**3,
    )
    FalProxy(app)
    return app


def floor_app():
    """The same deployment with no proxy: a Flask view answering the upstream's body."""
    from flask import Flask

    app = Flask("bench-floor")
    body = requests.get(os.environ["BENCH_UPSTREAM"] + "/status", timeout=10).content

    @app.get(ROUTE)
    def answer():
        return app.response_class(body, mimetype="application/json")

    return app


# --- Measurements ----------------------------------------------------------------------------


def time_to_first_event(url, headers, count):
    samples = []
    with requests.Session() as session:
        for i in range(count + 3):
            started = time.perf_counter()
            with session.post(url, headers=headers, json={"prompt": "bench"}, stream=True,
                              timeout=30) as response:
                assert response.status_code == 200, response.status_code
                for line in response.iter_lines():
                    if line.startswith(b"data:"):
                        break
                elapsed = (time.perf_counter() - started) * 1000
                for _ in response.iter_lines():
                    pass
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


def upload_through_proxy(proxy_base, mib, master_pid):
    workers = worker_pids(master_pid)
    before = max(memory_kib(w, "VmRSS") for w in workers)
    started = time.perf_counter()
    response = requests.put(
        proxy_base + ROUTE,
        headers={"x-fal-target-url": "https://v3.fal.media/files/bench/big.bin",
                 "Content-Type": "application/octet-stream"},
        data=Zeros(mib * 1024 * 1024),
        timeout=300,
    )
    seconds = time.perf_counter() - started
    assert response.status_code == 200, response.text
    peak = max(memory_kib(w, "VmHWM") for w in workers)
    return before / 1024, peak / 1024, seconds, response.json()["size"]


# --- Main ------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target")
    parser.add_argument("--seconds", type=float, default=3.0, help="per load run")
    parser.add_argument("--connections", type=int, default=8, help="concurrent clients")
    parser.add_argument("--sse", type=int, default=15, help="SSE samples per target")
    parser.add_argument("--upload-mib", type=int, default=500)
    args = parser.parse_args()

    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "@fal-ai").is_dir():
        sys.exit("bench/proxy.py needs node and tests/js/node_modules (npm ci in tests/js)")
    procs = []
    instance = None
    try:
        up_proc, upstream = start_node("upstream.mjs", "0", cwd=BENCH)
        procs.append(up_proc)
        node_proc, node_base = start_node("official_proxy.mjs", upstream, "0", cwd=JS_DIR)
        procs.append(node_proc)
        falweb_proc, falweb_base = start_gunicorn(
            "proxy:proxy_app()", env={"BENCH_UPSTREAM": upstream}, pythonpath=BENCH)
        procs.append(falweb_proc)
        floor_proc, floor_base = start_gunicorn(
            "proxy:floor_app()", env={"BENCH_UPSTREAM": upstream}, pythonpath=BENCH)
        procs.append(floor_proc)
        # The whole falweb app (wsgi:app) too, its proxy behind the app's access control
        # and ownership checks; rate limits off (they would answer 429 to this load).
        instance = tempfile.mkdtemp(prefix="falweb-bench-proxy-")
        app_proc, app_base = start_gunicorn("wsgi:app", env={
            "FALWEB_INSTANCE_PATH": instance, "FALWEB_LOCAL_URL": upstream,
            "FALWEB_LIMITS_ENABLED": "false", "FALWEB_LOG_LEVEL": "WARNING"})
        procs.append(app_proc)
        hosts = Hosts(upstream)

        proxied = {"x-fal-target-url": STATUS}
        falweb_pids = [falweb_proc.pid, *worker_pids(falweb_proc.pid)]
        targets = {
            "direct": (hosts.resolve(STATUS), {}, [up_proc.pid]),
            "fal Node proxy": (node_base + ROUTE, proxied, [node_proc.pid]),
            "falweb proxy": (falweb_base + ROUTE, proxied, falweb_pids),
            "falweb app": (app_base + ROUTE, proxied,
                           [app_proc.pid, *worker_pids(app_proc.pid)]),
            "Flask, no proxy": (floor_base + ROUTE, {},
                                [floor_proc.pid, *worker_pids(floor_proc.pid)]),
        }
        runs = {name: {"loaded": [], "single": []} for name in targets}
        for i in range(args.rounds):
            names = list(targets)
            names = names[i % len(names):] + names[: i % len(names)]  # rotate who goes first
            for name in names:
                url, headers, pids = targets[name]
                runs[name]["loaded"].append(
                    load(url, args.connections, args.seconds, headers, pids))
                runs[name]["single"].append(load(url, 1, args.seconds, headers))

        def med(name, kind, key):
            return statistics.median(r[key] for r in runs[name][kind])

        print(
            f"\nloopback, {os.cpu_count()} CPUs; GET a queue status from a trivial Node upstream; "
            f"median of {args.rounds} interleaved rounds of {args.seconds:g}s; "
            f"falweb under gunicorn.conf.py\n"
        )
        print(f"{'':17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/req':>12}{'errors':>8}"
              f"   {'1 client: p50 ms':>17}{'+ over direct':>15}")
        d1 = med("direct", "single", "p50")
        for name in targets:
            errors = sum(r["errors"] for kind in runs[name].values() for r in kind)
            single = med(name, "single", "p50")
            print(
                f"{name:17}{med(name, 'loaded', 'rps'):9.0f}{med(name, 'loaded', 'p50'):9.2f}"
                f"{med(name, 'loaded', 'p99'):9.2f}{med(name, 'loaded', 'cpu_us'):12.0f}"
                f"{errors:8d}   {single:17.3f}{single - d1:15.3f}"
            )

        falweb_rps = med("falweb proxy", "loaded", "rps")
        node_rps = med("fal Node proxy", "loaded", "rps")
        falweb_p50 = med("falweb proxy", "loaded", "p50")
        node_p50 = med("fal Node proxy", "loaded", "p50")
        f1, n1 = med("falweb proxy", "single", "p50"), med("fal Node proxy", "single", "p50")
        print("\ngoals (falweb against a baseline measured in this run):")
        goal("proxy throughput", f"{falweb_rps:.0f} req/s",
             f"{falweb_rps / node_rps:.2f}× Node proxy",
             f"(Node proxy {node_rps:.0f} req/s; goal ≥ 1.0×)", falweb_rps >= node_rps)
        falweb_cpu = med("falweb proxy", "loaded", "cpu_us")
        node_cpu = med("fal Node proxy", "loaded", "cpu_us")
        goal("proxy CPU per request (noise-proof)", f"{falweb_cpu:.0f} µs",
             f"{node_cpu / falweb_cpu:.2f}× Node proxy's efficiency",
             f"(Node proxy {node_cpu:.0f} µs; the server processes only)", falweb_cpu <= node_cpu)
        floor_cpu = med("Flask, no proxy", "loaded", "cpu_us")
        print(f"  (of falweb's {falweb_cpu:.0f} µs: gunicorn and Flask answering by themselves "
              f"{floor_cpu:.0f} µs, proxying {falweb_cpu - floor_cpu:.0f} µs)")
        goal(f"proxy p50, {args.connections} clients", f"{falweb_p50:.2f} ms",
             f"{falweb_p50 / node_p50:.2f}× Node proxy", f"(Node proxy {node_p50:.2f} ms)",
             falweb_p50 <= node_p50)
        goal("proxy added p50, 1 client", f"+{f1 - d1:.3f} ms", f"{f1 / d1:.2f}× direct",
             f"(direct {d1:.3f} ms, Node proxy +{n1 - d1:.3f} ms; goal ≤ +1 ms)", f1 - d1 <= 1.0)

        if args.sse:
            sse_url = f"https://fal.run/{ENDPOINT}/stream"
            sse = {
                "falweb proxy": time_to_first_event(
                    falweb_base + ROUTE, {"x-fal-target-url": sse_url}, args.sse),
                "fal Node proxy": time_to_first_event(
                    node_base + ROUTE, {"x-fal-target-url": sse_url}, args.sse),
                "direct": time_to_first_event(hosts.resolve(sse_url), {}, args.sse),
            }
            print(f"\nSSE time to first event, p50: falweb {sse['falweb proxy']:.2f} ms = "
                  f"{sse['falweb proxy'] / sse['fal Node proxy']:.2f}× Node proxy "
                  f"({sse['fal Node proxy']:.2f} ms); direct {sse['direct']:.2f} ms")

        if args.upload_mib:
            before, peak, seconds, stored = upload_through_proxy(
                falweb_base, args.upload_mib, falweb_proc.pid)
            print(
                f"{args.upload_mib} MiB PUT through the falweb proxy: {seconds:.1f}s "
                f"({args.upload_mib / seconds:.0f} MiB/s), upstream got {stored / 2**20:.0f} MiB; "
                f"worker RSS {before:.0f} MiB before, peak (VmHWM) {peak:.0f} MiB"
            )
    finally:
        for proc in procs:
            stop(proc)
        if instance:
            shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    main()
