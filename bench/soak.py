"""Soak: the README's gunicorn deployment under pollers, live sessions and slow clients.

For ``--seconds`` (default 60), against gunicorn (gunicorn.conf.py, its default 2 workers
and threads) on a loopback port with the embedded local runtime:

- ``--pollers`` (200) htmx pollers of unfinished request pages, one status poll a second
  each, as a browser tab does;
- ``--live`` (50) live-mode sessions sending a prompt every 2 s;
- ``--slow`` (300) slow clients that send a request's headers a byte every few seconds,
  and connect again when the server cuts them off;
- one prober timing ``GET /healthz`` every 100 ms.

Prints /healthz p50/p99/max against the same probe on an idle server first (the baseline,
same run), errors seen by well-behaved clients, polls and live results served, and each
worker's peak RSS. Stops by itself; every request goes to 127.0.0.1.

    .venv/bin/python bench/soak.py --seconds 60
"""

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests
import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from falweb.testing import wait_until  # noqa: E402


def start_gunicorn(folder):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_KEY", "FALWEB_"))}
    # Slow jobs, so the pollers' requests stay unfinished for the whole soak.
    env.update({"FALWEB_INSTANCE_PATH": os.path.join(folder, "instance"),
                "FALWEB_LOCAL_STEP_DELAY": "2.0", "FALWEB_BIND": "127.0.0.1:0"})
    log = os.path.join(folder, "gunicorn.log")
    out = open(log, "w")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def listening():
        match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", open(log).read())
        return match and match.group(1)

    url = wait_until(listening, timeout=60, interval=0.1, message="gunicorn to listen")
    wait_until(lambda: requests.get(url + "/healthz", timeout=5).ok, timeout=60,
               interval=0.1, ignore=requests.ConnectionError, message="/healthz")
    return proc, out, url


def workers_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def probe(url, stop, samples, errors):
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ok = requests.get(url + "/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            ok = False
        samples.append((time.perf_counter() - started) * 1000)
        if not ok:
            errors["healthz"] += 1
        time.sleep(0.1)


def percentiles(samples):
    ordered = sorted(samples)
    return (statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1] if len(ordered)
            > 1 else ordered[0], ordered[-1])


def poller(url, request_id, stop, counts, errors):
    session = requests.Session()
    # Tabs are opened at different moments: their once-a-second polls do not line up.
    stop.wait(random.random())
    while not stop.is_set():
        try:
            answer = session.get(f"{url}/requests/{request_id}/status", timeout=30,
                                 headers={"HX-Request": "true"})
            if answer.status_code in (200, 286):
                counts["polls"] += 1
            else:
                errors["polls"] += 1
        except requests.RequestException:
            errors["polls"] += 1
        stop.wait(1.0)


def live(url, n, stop, counts, errors):
    stop.wait(random.random() * 2)
    try:
        ws = websocket.create_connection(url.replace("http", "ws")
                                         + "/live/fal-ai/fast-lcm-diffusion/ws", timeout=30)
    except (OSError, websocket.WebSocketException):
        errors["live"] += 1
        return
    try:
        while not stop.is_set():
            ws.send(json.dumps({"prompt": f"session {n} at {time.time():.0f}",
                                "image_size": {"width": 64, "height": 64},
                                "num_inference_steps": 1}))
            while True:
                message = json.loads(ws.recv())
                if message["type"] == "result":
                    counts["live"] += 1
                    break
                if message["type"] in ("error", "invalid"):
                    errors["live"] += 1
                    break
            stop.wait(2.0)
    except (OSError, websocket.WebSocketException, ValueError):
        if not stop.is_set():
            errors["live"] += 1
    finally:
        ws.close()


def slow_client(host, port, stop, cut):
    """Slowloris: a request head sent a byte every 3 s; when the server cuts it off (408
    after FALWEB_HEADER_TIMEOUT), it connects again and starts over, until the end."""
    request = b"GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"a" * 4000 + b"\r\n\r\n"
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=10)
        except OSError:
            stop.wait(1)
            continue
        with sock:
            for byte in request:
                if stop.wait(3.0):
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    cut.append(1)  # the server gave up on us: as it should
                    break


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--live", type=int, default=50)
    # More slow clients than the deployment has threads (2 × 128): each must cost a socket.
    parser.add_argument("--slow", type=int, default=300)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="falweb-soak-")
    proc, out, url = start_gunicorn(folder)
    errors = {"healthz": 0, "polls": 0, "live": 0}
    counts = {"polls": 0, "live": 0}
    cut = []
    threads = []
    try:
        # Baseline: the same probe on the idle server, in this run.
        stop = threading.Event()
        idle = []
        prober = threading.Thread(target=probe, args=(url, stop, idle, {"healthz": 0}))
        prober.start()
        time.sleep(5)
        stop.set()
        prober.join()

        request_ids = []
        browser = requests.Session()
        for n in range(20):
            form = browser.get(f"{url}/models/fal-ai/fast-sdxl", timeout=30).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
            body = browser.post(f"{url}/models/fal-ai/fast-sdxl", timeout=30,
                                allow_redirects=False,
                                data={"prompt": f"soak {n}", "num_inference_steps": "50",
                                      "csrf_token": csrf})
            request_ids.append(body.headers["Location"].rsplit("/", 1)[1])
        stop = threading.Event()
        loaded = []
        host, port = url.removeprefix("http://").split(":")
        threads = [threading.Thread(target=probe, args=(url, stop, loaded, errors))]
        threads += [threading.Thread(target=slow_client, args=(host, int(port), stop, cut))
                    for _ in range(args.slow)]
        threads += [threading.Thread(target=poller, args=(url, request_ids[n % 20], stop,
                                                          counts, errors))
                    for n in range(args.pollers)]
        threads += [threading.Thread(target=live, args=(url, n, stop, counts, errors))
                    for n in range(args.live)]
        for thread in threads:
            thread.daemon = True
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        rss = {pid: peak_rss_mb(pid) for pid in workers_of(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()
    base, load = percentiles(idle), percentiles(loaded)
    print(f"soak: {args.seconds:.0f} s, {args.pollers} pollers, {args.live} live sessions, "
          f"{args.slow} slow clients, gunicorn.conf.py defaults")
    print(f"/healthz idle   p50 {base[0]:7.1f} ms  p99 {base[1]:7.1f} ms  max {base[2]:7.1f} ms"
          f"  ({len(idle)} probes)")
    print(f"/healthz loaded p50 {load[0]:7.1f} ms  p99 {load[1]:7.1f} ms  max {load[2]:7.1f} ms"
          f"  ({len(loaded)} probes; p99 {load[1] / max(base[1], 0.001):.1f}x idle)")
    print(f"served: {counts['polls']} status polls, {counts['live']} live results; "
          f"slow clients cut off {len(cut)} times")
    print(f"errors of well-behaved clients: healthz {errors['healthz']}, polls "
          f"{errors['polls']}, live {errors['live']}")
    for pid, mb in sorted(rss.items()):
        print(f"worker {pid}: peak RSS {mb:.0f} MiB" if mb else f"worker {pid}: gone")
    goal = load[1] < 100 and not any(errors.values())
    print("goal (/healthz p99 < 100 ms, 0 errors):", "met" if goal else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
