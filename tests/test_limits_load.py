"""Load under gunicorn (two workers sharing the SQLite limit counters): one user hammering
the proxy is refused past their limit, while another user at a normal pace never is.

Bounded: at most 20 s of load and 2000 requests, on loopback only.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests

from falweb.testing import session_from
from falweb.testing import wait_until
from falweb.users import Users

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY = "/api/fal/proxy"
TARGET = "x-fal-target-url"
SUBMIT_URL = "https://queue.fal.run/fal-ai/fast-sdxl"
LIMIT = 100  # proxy calls per hour and per user (and per address): far beyond the run
HAMMER_THREADS = 8
HAMMER_MAX_REQUESTS = 1500
HAMMER_MAX_SECONDS = 12.0
CALM_MAX_REQUESTS = 60
CALM_PAUSE = 0.2


def session_for(token, address):
    session = session_from(address)
    session.headers.update({"Authorization": f"Key {token}",
                            "Content-Type": "application/json"})
    return session


@pytest.fixture
def gunicorn_team(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    store = Users(str(instance))
    tokens = {}
    for name in ("alice", "bob"):
        store.add(name, f"{name}-password")
        tokens[name] = store.create_token(name, "load test")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_KEY", "FALWEB_"))}
    env.update({"FALWEB_INSTANCE_PATH": str(instance), "FALWEB_AUTH": "password",
                "FALWEB_LOCAL_STEP_DELAY": "0.01", "FALWEB_BIND": "127.0.0.1:0",
                "FALWEB_GUNICORN_WORKERS": "2", "FALWEB_GUNICORN_THREADS": "8",
                "FALWEB_LIMIT_PROXY": f"{LIMIT}/hour", "FALWEB_LOG_LEVEL": "WARNING"})
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                 "--access-logfile", os.devnull, "wsgi:app"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)

    def booted():
        text = log.read_text()
        match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", text)
        if match and text.count("Booting worker") >= 2:
            return match
        assert proc.poll() is None, text
        return None

    try:
        url = wait_until(booted, timeout=60, interval=0.1,
                         message=lambda: f"gunicorn to boot:\n{log.read_text()}").group(1)
        wait_until(lambda: requests.get(url + "/healthz", timeout=5).status_code == 200,
                   timeout=30, interval=0.1, ignore=requests.ConnectionError,
                   message=lambda: f"/healthz to answer:\n{log.read_text()}")
        yield url, tokens, log
    finally:
        proc.terminate()
        proc.wait(30)


def submit(session, url):
    answer = session.post(url + PROXY, headers={TARGET: SUBMIT_URL}, timeout=30,
                          data=json.dumps({"prompt": "load", "num_inference_steps": 1}))
    assert answer.status_code == 200, answer.text
    return f"{SUBMIT_URL}/requests/{answer.json()['request_id']}/status"


@pytest.mark.slow
def test_a_user_hammering_the_proxy_is_refused_and_another_is_not(gunicorn_team):
    url, tokens, log = gunicorn_team
    alice = session_for(tokens["alice"], "127.0.0.2")
    bob = session_for(tokens["bob"], "127.0.0.3")
    alice_status, bob_status = submit(alice, url), submit(bob, url)

    lock = threading.Lock()
    hammer = Counter()
    sent = [0]
    refusals = []  # (Retry-After, body) of each 429
    started = time.monotonic()
    done = threading.Event()

    def hammering():
        session = session_for(tokens["alice"], "127.0.0.2")
        try:
            while time.monotonic() - started < HAMMER_MAX_SECONDS:
                with lock:
                    if sent[0] >= HAMMER_MAX_REQUESTS:
                        return
                    sent[0] += 1
                answer = session.get(url + PROXY, headers={TARGET: alice_status}, timeout=30)
                with lock:
                    hammer[answer.status_code] += 1
                    if answer.status_code == 429:
                        refusals.append((answer.headers.get("Retry-After"), answer.json()))
        finally:
            session.close()

    calm = Counter()

    def calm_pace():
        while not done.is_set() and sum(calm.values()) < CALM_MAX_REQUESTS:
            answer = bob.get(url + PROXY, headers={TARGET: bob_status}, timeout=30)
            calm[answer.status_code] += 1
            done.wait(CALM_PAUSE)

    threads = [threading.Thread(target=hammering) for _ in range(HAMMER_THREADS)]
    bob_thread = threading.Thread(target=calm_pace)
    bob_thread.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    done.set()
    bob_thread.join(60)
    elapsed = time.monotonic() - started
    print(f"\nload: {elapsed:.1f} s; alice (hammering, {HAMMER_THREADS} threads): "
          f"{dict(hammer)}; bob (one call per {CALM_PAUSE} s): {dict(calm)}; "
          f"limit {LIMIT}/hour per user and per address, 2 gunicorn workers")

    assert sum(hammer.values()) == sent[0] <= HAMMER_MAX_REQUESTS
    # Exactly the limit got through for alice, across both workers (her submit was one).
    assert hammer[200] + hammer[202] == LIMIT - 1, (dict(hammer), log.read_text()[-3000:])
    assert set(hammer) <= {200, 202, 429} and hammer[429] > 0
    for retry_after, body in refusals:
        assert retry_after is not None and 1 <= int(retry_after) <= 3600
        assert body == {"detail": f"Rate limit exceeded: {LIMIT} per 1 hour"}
    # bob never saw an error.
    assert sum(calm.values()) >= 5 and set(calm) <= {200, 202}, dict(calm)
    alice.close()
    bob.close()
