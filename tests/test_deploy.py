"""Deployment as the README says: gunicorn with gthread workers on wsgi:app."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
import websocket

from falweb.testing import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def serve_gunicorn(tmp_path, workers=2, threads=8, **settings):
    """gunicorn as the README runs it (gunicorn.conf.py, wsgi:app) on a free port; yields
    (url, log path) once every worker answers, and stops it after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_KEY", "FALWEB_"))}
    env.update({"FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
                "FALWEB_LOCAL_STEP_DELAY": "0.01", "FALWEB_BIND": "127.0.0.1:0",
                "FALWEB_GUNICORN_WORKERS": str(workers),
                "FALWEB_GUNICORN_THREADS": str(threads), **settings})
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                 "wsgi:app"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)

    def booted():
        text = log.read_text()
        match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", text)
        if match and text.count("Booting worker") >= workers:
            return match
        assert proc.poll() is None, text  # it died: no use waiting
        return None

    try:
        url = wait_until(booted, timeout=60, interval=0.1,
                         message=lambda: f"gunicorn and its workers to boot:\n{log.read_text()}"
                         ).group(1)
        # Workers load the app after they boot.
        wait_until(lambda: requests.get(url + "/healthz", timeout=5).status_code == 200,
                   timeout=30, interval=0.1, ignore=requests.ConnectionError,
                   message=lambda: f"/healthz to answer 200:\n{log.read_text()}")
        yield url, log
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def gunicorn(tmp_path):
    # With gunicorn's access log on (off by default), to see what its lines hold.
    with serve_gunicorn(tmp_path, FALWEB_ACCESS_LOG="-") as served:
        yield served


@pytest.mark.slow
def test_gunicorn_serves_pages_queue_proxy_and_live(gunicorn):
    url, log = gunicorn
    health = requests.get(url + "/healthz", timeout=10).json()
    assert health["backend"] == "local" and health["local"]["status"] == "ok"

    # The queue, shared by both workers through SQLite: submit, then poll many times
    # (consecutive requests land on either worker).
    body = requests.post(url + "/local/queue/fal-ai/fast-sdxl",
                         json={"prompt": "deployed", "num_inference_steps": 3,
                               "image_size": "square"}, timeout=10).json()
    wait_until(
        lambda: requests.get(body["status_url"], timeout=10).json()["status"] == "COMPLETED",
        timeout=30, interval=0.05, message="the queued request to complete")
    result = requests.get(body["response_url"], timeout=10).json()
    assert requests.get(result["images"][0]["url"], timeout=10).status_code == 200

    # The proxy blueprint, as fal's JS client calls it.
    proxied = requests.post(url + "/api/fal/proxy",
                            headers={"x-fal-target-url": "https://fal.run/fal-ai/fast-sdxl",
                                     "content-type": "application/json"},
                            data=json.dumps({"prompt": "via proxy", "num_inference_steps": 1,
                                             "image_size": "square"}), timeout=30)
    assert proxied.status_code == 200 and proxied.json()["prompt"] == "via proxy"

    # A page that calls the embedded runtime from inside a gunicorn worker.
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and "fal-ai/realistic-vision" in page.text

    # Live mode: a websocket held by a gthread worker.
    live = url.replace("http", "ws") + "/live/fal-ai/fast-lcm-diffusion/ws"
    ws = websocket.create_connection(live, timeout=15)
    try:
        ws.send(json.dumps({"prompt": "live", "image_size": "square", "num_inference_steps": 1}))
        while (message := json.loads(ws.recv()))["type"] != "result":
            pass
        assert message["result"]["prompt"] == "live"
    finally:
        ws.close()

    # A token-authenticated stream carries its token in the query string; the access log
    # shows paths only.
    token = requests.post(url + "/local/rest/tokens/", json={"allowed_apps": ["fast-sdxl"]},
                          timeout=10).json()
    streamed = requests.post(url + "/local/run/fal-ai/fast-sdxl/stream",
                             params={"fal_jwt_token": token}, timeout=30,
                             json={"prompt": "x", "num_inference_steps": 1,
                                   "image_size": "square"})
    assert streamed.status_code == 200

    def stream_logged():
        text = log.read_text()
        return text if "/run/fal-ai/fast-sdxl/stream" in text else None

    text = wait_until(stream_logged, timeout=15, interval=0.1,
                      message="the stream in the access log")
    assert "fal_jwt_token" not in text and token not in text


@pytest.mark.slow
def test_live_sessions_do_not_starve_short_requests(gunicorn):
    # The fixture runs 2 workers of 8 threads. Live sessions once held two threads each and
    # were not capped, so the 27th session (with 32 threads a worker) stopped /healthz.
    # Now each holds one, and at most half a worker's threads are live sessions.

    url, _ = gunicorn
    live = url.replace("http", "ws") + "/live/fal-ai/fast-lcm-diffusion/ws"
    sessions = [websocket.create_connection(live, timeout=15) for _ in range(12)]
    try:
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
        served = busy = 0
        for ws in sessions:
            try:
                ws.send(json.dumps({"prompt": "still here", "image_size": "square",
                                    "num_inference_steps": 1}))
                while (message := json.loads(ws.recv()))["type"] not in ("result", "error"):
                    pass
            except (OSError, websocket.WebSocketException):
                busy += 1  # told "busy" and closed before our input arrived
                continue
            served += message["type"] == "result"
            busy += message.get("error") == "BUSY"
        # At most 4 a worker (however gunicorn spread them): the rest were told "busy".
        assert 4 <= served <= 8 and served + busy == 12, (served, busy)
    finally:
        for ws in sessions:
            ws.close()


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _answer(sock):
    """The head of one whole response read from ``sock`` (its Content-Length body read too,
    so that the connection is ready for the next request)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])
    while len(body) < length:
        body += sock.recv(4096)
    return head


def _trickle(url, stop, answers):
    """A slowloris client: a request head sent a byte every 0.2 s, never finished."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            while not stop.is_set():
                sock.sendall(b"X")
                stop.wait(0.2)
            answers.append(b"")
        except OSError:  # the server closed it: what did it say first?
            try:
                answers.append(sock.recv(200))
            except OSError:
                answers.append(b"")


@pytest.mark.slow
def test_clients_trickling_headers_hold_no_thread(tmp_path):
    # One worker of 4 threads: with gunicorn's own gthread worker, 4 clients that trickle
    # their headers took every thread and /healthz stopped answering until they gave up.
    with serve_gunicorn(tmp_path, workers=1, threads=4, FALWEB_HEADER_TIMEOUT="3") as (url, _):
        stop, answers = threading.Event(), []
        slow = [threading.Thread(target=_trickle, args=(url, stop, answers))
                for _ in range(20)]
        for thread in slow:
            thread.start()
        try:
            time.sleep(0.5)  # every slow client connected and mid-head
            for _ in range(5):
                assert requests.get(url + "/healthz", timeout=2).status_code == 200
            # A request whose head arrives in pieces (but in time) is answered normally.
            host, port = url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                for piece in (b"GET /healthz HT", b"TP/1.1\r\nHost: x\r", b"\n\r\n"):
                    sock.sendall(piece)
                    time.sleep(0.2)
                assert sock.recv(100).startswith(b"HTTP/1.1 200")
            # So is the next request of a kept-alive connection: answered, then trickled
            # (a deadline per request, not only per connection).
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(HEALTHZ)
                assert _answer(sock).startswith(b"HTTP/1.1 200")
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.1 408")  # after 3 s
            # Past the deadline the slow ones are answered 408 and closed.
            wait_until(lambda: len(answers) == 20, timeout=15, interval=0.1)
        finally:
            stop.set()
            for thread in slow:
                thread.join(10)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]


@pytest.mark.slow
def test_kept_alive_clients_linger_on_at_most_half_the_threads(tmp_path):
    # After an answer a thread waits FALWEB_KEEPALIVE_LINGER for its connection's next
    # request (30 s here, so that a wrong wait shows): at most half the threads may, so
    # clients that keep connections open and quiet never hold the ones new clients need.
    # (gunicorn closes a connection quiet for longer than its keep-alive: 60 s here.)
    with serve_gunicorn(tmp_path, workers=1, threads=4, FALWEB_KEEPALIVE_LINGER="30",
                        GUNICORN_CMD_ARGS="--keep-alive 60") as (url, log):
        host, port = url.removeprefix("http://").split(":")
        quiet = [socket.create_connection((host, int(port)), timeout=10) for _ in range(4)]
        try:
            for sock in quiet:
                sock.sendall(HEALTHZ)
                assert _answer(sock).startswith(b"HTTP/1.1 200")
            for _ in range(5):
                assert requests.get(url + "/healthz", timeout=5).status_code == 200
            # Their next requests are answered, whether a thread waited for them or not.
            for sock in quiet:
                sock.sendall(HEALTHZ)
                assert _answer(sock).startswith(b"HTTP/1.1 200")
            # A next head that arrives in pieces goes back to the poller, not held on a
            # thread: new clients are still answered meanwhile, and so is the head, once whole.
            for sock in quiet:
                sock.sendall(HEALTHZ[:20])
            for _ in range(5):
                assert requests.get(url + "/healthz", timeout=5).status_code == 200
            for sock in quiet:
                sock.sendall(HEALTHZ[20:])
                assert _answer(sock).startswith(b"HTTP/1.1 200")
            # Requests sent back to back (pipelined) on one connection are all answered.
            sock = quiet[0]
            sock.sendall(HEALTHZ * 3)
            assert [_answer(sock)[:12] for _ in range(3)] == [b"HTTP/1.1 200"] * 3
            # No access log line per request unless FALWEB_ACCESS_LOG asks for one.
            assert "/healthz" not in log.read_text()
        finally:
            for sock in quiet:
                sock.close()


def _connections_per_worker(port, pids):
    """How many established connections to ``port`` each worker process holds (Linux)."""
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    held = []
    for pid in pids:
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                count += link.startswith("socket:[") and link[8:-1] in inodes
        held.append(count)
    return held


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc")
def test_kept_alive_clients_are_shared_out_between_workers(tmp_path):
    # Both workers poll one listening socket and the first to accept() wins: with gunicorn's
    # own accept, 8 clients opening in turn often all went to one worker (0 and 8, 2 and 6),
    # the other idle. falweb's worker lets the one holding more wait its turn.
    with serve_gunicorn(tmp_path, workers=2, threads=8) as (url, log):
        port = int(url.rsplit(":", 1)[1])
        pids = [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)",
                                               log.read_text())]
        # Workers load the app after they boot: first see each of them answer.
        seen = set()

        def both_answer():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(HEALTHZ)
                assert _answer(sock).startswith(b"HTTP/1.1 200")
                held = _connections_per_worker(port, pids)
                seen.update(i for i, n in enumerate(held) if n)
            return len(seen) == 2

        wait_until(both_answer, timeout=30, interval=0.05, message="both workers to answer")
        for _ in range(4):
            clients = []
            try:
                for _ in range(8):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    clients.append(sock)
                    sock.sendall(HEALTHZ)
                    assert _answer(sock).startswith(b"HTTP/1.1 200")
                held = sorted(_connections_per_worker(port, pids))
                assert sum(held) == 8 and held[0] >= 3, held
            finally:
                for sock in clients:
                    sock.close()
