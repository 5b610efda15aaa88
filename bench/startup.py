"""Benchmark of startup: ``falweb serve`` until it answers, and ``import falweb.client``.

Each figure is the median of ``--runs`` fresh processes, interleaved with its baseline
measured in this run: for the import, ``import requests`` (the one library the client
cannot do without); for ``serve``, the same command line serving a bare Flask app (the
floor of a Python web server starting). ``serve`` counts from the process start until
``GET /healthz`` answers, with a fresh instance folder (first start: keys and databases are
created) and the local backend. As on an installed falweb, modules' bytecode is cached
(``PYTHONDONTWRITEBYTECODE`` is dropped, and a first unmeasured run writes it).

    .venv/bin/python bench/startup.py [--runs 7]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests
from benchlib import ROOT
from benchlib import free_port
from benchlib import goal
from benchlib import stop

BARE_FLASK = (
    "import sys; from flask import Flask; from werkzeug.serving import make_server\n"
    "app = Flask('bare'); app.get('/healthz')(lambda: 'ok')\n"
    "make_server('127.0.0.1', int(sys.argv[1]), app, threaded=True).serve_forever()\n"
)


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def import_ms(module):
    """Cumulative import time of ``module`` (µs from -X importtime) in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True, cwd=ROOT, env=ENV)
    for line in reversed(out.stderr.splitlines()):
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
        if match and match.group(2) == module:
            return int(match.group(1)) / 1000
    raise RuntimeError(f"no import time for {module}")


def ready_ms(command, port, env):
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command} exited with {proc.returncode}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                    return (time.perf_counter() - started) * 1000
            except requests.ConnectionError:
                time.sleep(0.005)
    finally:
        stop(proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    falweb = str(os.path.join(os.path.dirname(sys.executable), "falweb"))
    samples = {"client": [], "requests": [], "serve": [], "bare": []}
    for run in range(args.runs + 1):  # the first run writes bytecode caches: not counted
        samples["client"].append(import_ms("falweb.client"))
        samples["requests"].append(import_ms("requests"))
        folder = tempfile.mkdtemp(prefix="falweb-bench-start-")
        env = {**ENV, "FALWEB_INSTANCE_PATH": folder, "FALWEB_BACKEND": "local"}
        try:
            port = free_port()
            samples["serve"].append(
                ready_ms([falweb, "serve", "--port", str(port)], port, env))
            port = free_port()
            samples["bare"].append(
                ready_ms([sys.executable, "-c", BARE_FLASK, str(port)], port, env))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if run == 0:
            for values in samples.values():
                values.clear()
    client, floor, serve, bare = (statistics.median(samples[k]) for k in samples)
    print(f"\nstartup; medians of {args.runs} fresh processes, interleaved with the baselines")
    print("\ngoals (against a baseline measured in this run):")
    goal("falweb serve: start → /healthz", f"{serve:.0f} ms", f"{serve / bare:.2f}× bare Flask",
         f"(bare Flask app {bare:.0f} ms; goal ≤ 1,000 ms)", serve <= 1000)
    goal("import falweb.client", f"{client:.0f} ms", f"{client / floor:.2f}× import requests",
         f"(import requests {floor:.0f} ms; goal ≤ 150 ms)", client <= 150)


if __name__ == "__main__":
    main()
