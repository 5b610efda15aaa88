"""Rate limits and daily caps over real sockets: submits, proxy calls, uploads, live frames;
per user and per client address; the SQLite storage that gunicorn workers share."""

import io
import json
import re
import sqlite3
import threading
from contextlib import contextmanager

import pytest
import requests
import websocket
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from PIL import Image

from falweb import create_app
from falweb import history
from falweb import limits
from falweb import limits_storage
from falweb.limits_storage import SQLiteStorage
from falweb.testing import serve_app
from falweb.testing import session_from

PROXY = "/api/fal/proxy"
TARGET = "x-fal-target-url"
SUBMIT_URL = "https://queue.fal.run/fal-ai/fast-sdxl"
INITIATE_URL = "https://rest.alpha.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"


# -- helpers ---------------------------------------------------------------------------------


def config(tmp_path, **extra):
    return {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
            "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0, **extra}


@contextmanager
def team(tmp_path, **extra):
    """The app in password mode with alice and bob: ``(server, {name: API token})``."""
    from falweb.users import Users

    (tmp_path / "instance").mkdir(exist_ok=True)
    store = Users(str(tmp_path / "instance"))
    tokens = {}
    for name in ("alice", "bob"):
        store.add(name, f"{name}-password")
        tokens[name] = store.create_token(name, "test")
    with serve_app(config(tmp_path, FALWEB_AUTH="password", **extra)) as server:
        yield server, tokens


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def login(server, name, address="127.0.0.1"):
    session = session_from(address)
    page = session.get(server.url + "/login", timeout=10).text
    answer = session.post(server.url + "/login", timeout=10, allow_redirects=False, data={
        "name": name, "password": f"{name}-password", "csrf_token": csrf_of(page)})
    assert answer.status_code == 303, answer.text
    return session


def submit_form(server, session, prompt="x", endpoint="fal-ai/fast-sdxl", files=None):
    form = session.get(f"{server.url}/models/{endpoint}", timeout=10).text
    return session.post(f"{server.url}/models/{endpoint}", timeout=30, allow_redirects=False,
                        data={"prompt": prompt, "num_inference_steps": "1",
                              "csrf_token": csrf_of(form)}, files=files)


def proxy(server, token, method, target, address="127.0.0.1", **kwargs):
    session = session_from(address)
    with session:
        return session.request(method, server.url + PROXY, timeout=30, **kwargs, headers={
            TARGET: target, "Authorization": f"Key {token}",
            "Content-Type": "application/json"})


def proxy_submit(server, token, address="127.0.0.1"):
    return proxy(server, token, "POST", SUBMIT_URL, address,
                 data=json.dumps({"prompt": "via proxy", "num_inference_steps": 1}))


def assert_fal_429(answer, text):
    assert answer.status_code == 429, answer.text
    assert answer.json() == {"detail": f"Rate limit exceeded: {text}"}
    assert 1 <= int(answer.headers["Retry-After"]) <= 60


def png():
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (20, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


# -- the storage -----------------------------------------------------------------------------


class _Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def time(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(limits_storage, "time", fake)
    return fake


def test_sqlite_storage_counts_windows_and_forgets_them(tmp_path, clock):
    url = f"sqlite:///{tmp_path}/limits.sqlite"
    storage = storage_from_string(url)
    assert isinstance(storage, SQLiteStorage) and storage.check()
    assert storage.get("k") == 0
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.incr("k", 60, amount=5) == 8
    assert storage.get("k") == 8 and storage.get_expiry("k") == clock.now + 60
    clock.now += 59
    assert storage.incr("k", 60) == 9  # still the window that started first
    clock.now += 1
    assert storage.get("k") == 0 and storage.get_expiry("k") == clock.now
    assert storage.incr("k", 60) == 1 and storage.get_expiry("k") == clock.now + 60
    storage.incr("other", 10)
    storage.clear("k")
    assert storage.get("k") == 0 and storage.get("other") == 1
    assert storage.reset() == 1 and storage.get("other") == 0
    storage.close()


def test_sqlite_storage_under_the_fixed_window_strategy(tmp_path, clock):
    strategy = FixedWindowRateLimiter(SQLiteStorage(f"sqlite:///{tmp_path}/l.sqlite"))
    item = parse_many("3/minute")[0]
    assert [strategy.hit(item, "user:a") for _ in range(4)] == [True, True, True, False]
    assert strategy.hit(item, "user:b")  # another key, another counter
    assert not strategy.test(item, "user:a")
    stats = strategy.get_window_stats(item, "user:a")
    assert stats.remaining == 0 and stats.reset_time == clock.now + 60
    clock.now += 60
    assert strategy.test(item, "user:a") and strategy.hit(item, "user:a")


def test_two_storages_on_one_file_count_together_exactly(tmp_path):
    # As two gunicorn workers do: separate storages, separate connections, one file.
    url = f"sqlite:///{tmp_path}/limits.sqlite"
    storages = [SQLiteStorage(url), SQLiteStorage(url)]

    def count(storage):
        for _ in range(100):
            storage.incr("shared", 3600)

    threads = [threading.Thread(target=count, args=(storages[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert storages[0].get("shared") == storages[1].get("shared") == 800
    db = sqlite3.connect(f"{tmp_path}/limits.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    for storage in storages:
        storage.close()


def test_expired_counters_are_purged(tmp_path, clock):
    storage = SQLiteStorage(f"sqlite:///{tmp_path}/limits.sqlite")
    for n in range(20):
        storage.incr(f"old{n}", 10)
    clock.now += limits_storage.PURGE_SECONDS + 11
    storage.incr("new", 10)  # the first write after a while also drops expired counters
    db = sqlite3.connect(f"{tmp_path}/limits.sqlite")
    assert db.execute("SELECT key FROM counter").fetchall() == [("new",)]
    db.close()


def test_settings_are_checked_at_start(tmp_path):
    with pytest.raises(ValueError, match="FALWEB_LIMIT_SUBMITS"):
        create_app(config(tmp_path, FALWEB_LIMIT_SUBMITS="lots"))
    app = create_app(config(tmp_path, FALWEB_LIMITS_STORAGE_URL="sqlite:///counters.sqlite"))
    assert limits.storage_url(app) == f"sqlite:///{tmp_path}/instance/counters.sqlite"
    assert (tmp_path / "instance" / "counters.sqlite").exists()


# -- submits -----------------------------------------------------------------------------------


def test_submits_count_together_on_the_pages_and_through_the_proxy(tmp_path):
    with team(tmp_path, FALWEB_LIMIT_SUBMITS="3/minute") as (server, tokens):
        alice = login(server, "alice", "127.0.0.2")
        first = submit_form(server, alice)
        assert first.status_code == 303, first.text
        request_id = first.headers["Location"].rsplit("/", 1)[1]
        csrf = csrf_of(alice.get(f"{server.url}/requests/{request_id}", timeout=10).text)
        rerun = alice.post(f"{server.url}/requests/{request_id}/rerun", timeout=30,
                           data={"csrf_token": csrf}, allow_redirects=False)
        assert rerun.status_code == 303
        assert proxy_submit(server, tokens["alice"], "127.0.0.2").status_code == 200

        # The fourth, whichever way it comes, is refused with fal's answer or a page.
        assert_fal_429(proxy_submit(server, tokens["alice"], "127.0.0.2"), "3 per 1 minute")
        run = proxy(server, tokens["alice"], "POST", "https://fal.run/fal-ai/fast-sdxl",
                    "127.0.0.2", data=json.dumps({"prompt": "x"}))
        assert_fal_429(run, "3 per 1 minute")
        page = submit_form(server, alice)
        assert page.status_code == 429 and 1 <= int(page.headers["Retry-After"]) <= 60
        assert "Rate limit exceeded: 3 per 1 minute. Try again in" in page.text
        assert 'id="model-form"' in page.text  # the form again, values kept
        again = alice.post(f"{server.url}/requests/{request_id}/rerun", timeout=30,
                           data={"csrf_token": csrf}, allow_redirects=False)
        assert again.status_code == 429 and "Retry-After" in again.headers
        assert "The re-run was refused" in again.text and "3 per 1 minute" in again.text
        with server.app.app_context():  # the form and the re-run, nothing refused
            assert history.page(1, 50, owner="alice")[1] == 2

        # Status polls are not submits: alice can still follow her requests.
        status = proxy(server, tokens["alice"], "GET",
                       f"{SUBMIT_URL}/requests/{request_id}/status", "127.0.0.2")
        assert status.status_code in (200, 202)
        # bob, from elsewhere, is not affected by alice's limit.
        bob = login(server, "bob", "127.0.0.3")
        assert submit_form(server, bob).status_code == 303
        assert proxy_submit(server, tokens["bob"], "127.0.0.3").status_code == 200


def test_direct_calls_to_the_runtime_count_like_proxy_calls(tmp_path):
    # The embedded runtime's API at /local is another door to the same backend.
    with team(tmp_path, FALWEB_LIMIT_SUBMITS="2/minute") as (server, tokens):
        alice = session_from("127.0.0.6")
        alice.headers["Authorization"] = f"Bearer {tokens['alice']}"
        with alice:
            for _ in range(2):
                answer = alice.post(server.url + "/local/queue/fal-ai/fast-sdxl", timeout=30,
                                    json={"prompt": "direct", "num_inference_steps": 1})
                assert answer.status_code == 200, answer.text
            assert_fal_429(alice.post(server.url + "/local/run/fal-ai/fast-sdxl", timeout=30,
                                      json={"prompt": "direct"}), "2 per 1 minute")
            # Through the proxy, the same count.
            assert_fal_429(proxy_submit(server, tokens["alice"], "127.0.0.6"), "2 per 1 minute")
            # Reading a status is no submit.
            request_id = answer.json()["request_id"]
            status = alice.get(f"{server.url}/local/queue/fal-ai/fast-sdxl/requests/"
                               f"{request_id}/status", timeout=30)
            assert status.status_code in (200, 202)


def test_an_address_over_its_limit_is_refused_whoever_asks(tmp_path):
    with team(tmp_path, FALWEB_LIMIT_SUBMITS="2/minute") as (server, tokens):
        for _ in range(2):
            assert proxy_submit(server, tokens["alice"], "127.0.0.4").status_code == 200
        # bob has submitted nothing, but his address has used its share.
        assert_fal_429(proxy_submit(server, tokens["bob"], "127.0.0.4"), "2 per 1 minute")
        assert proxy_submit(server, tokens["bob"], "127.0.0.5").status_code == 200


def test_a_daily_cap_refuses_until_the_next_day(tmp_path):
    with team(tmp_path, FALWEB_LIMIT_SUBMITS="100/minute;2/day") as (server, tokens):
        for _ in range(2):
            assert proxy_submit(server, tokens["alice"], "127.0.0.6").status_code == 200
        refused = proxy_submit(server, tokens["alice"], "127.0.0.6")
        assert refused.status_code == 429
        assert refused.json() == {"detail": "Rate limit exceeded: 2 per 1 day"}
        assert 3600 < int(refused.headers["Retry-After"]) <= 24 * 3600


# -- proxy calls, uploads ----------------------------------------------------------------------


def test_every_proxy_call_counts_status_polls_included(tmp_path):
    with team(tmp_path, FALWEB_LIMIT_PROXY="4/minute") as (server, tokens):
        submitted = proxy_submit(server, tokens["alice"])
        request_id = submitted.json()["request_id"]
        status_url = f"{SUBMIT_URL}/requests/{request_id}/status"
        for _ in range(3):
            assert proxy(server, tokens["alice"], "GET", status_url).status_code in (200, 202)
        assert_fal_429(proxy(server, tokens["alice"], "GET", status_url), "4 per 1 minute")
        # Refused before the ownership check: probing other ids costs the same.
        assert_fal_429(proxy(server, tokens["alice"], "GET", f"{SUBMIT_URL}/requests/nope"),
                       "4 per 1 minute")
        # The pages are not proxy calls.
        alice = login(server, "alice")
        assert submit_form(server, alice).status_code == 303


def test_uploads_are_limited_in_forms_and_through_the_proxy(tmp_path):
    with team(tmp_path, FALWEB_LIMIT_UPLOADS="2/minute") as (server, tokens):
        alice = login(server, "alice", "127.0.0.7")
        body = json.dumps({"content_type": "image/png", "file_name": "a.png"})
        assert proxy(server, tokens["alice"], "POST", INITIATE_URL, "127.0.0.7",
                     data=body).status_code == 200
        done = submit_form(server, alice, endpoint="fal-ai/fast-sdxl/image-to-image",
                           files={"image_url_file": ("in.png", png(), "image/png")})
        assert done.status_code == 303, done.text
        refused = submit_form(server, alice, endpoint="fal-ai/fast-sdxl/image-to-image",
                              files={"image_url_file": ("in.png", png(), "image/png")})
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert "Too many uploads: Rate limit exceeded: 2 per 1 minute" in refused.text
        assert_fal_429(proxy(server, tokens["alice"], "POST", INITIATE_URL, "127.0.0.7",
                             data=body), "2 per 1 minute")
        # A submit without a file is no upload.
        assert submit_form(server, alice).status_code == 303


# -- live frames --------------------------------------------------------------------------------


def test_live_frames_over_the_limit_get_a_message_and_the_socket_stays_open(tmp_path):
    # On one's own machine an explicit setting applies as written.
    with serve_app(config(tmp_path, FALWEB_LIMIT_LIVE_FRAMES="2/minute")) as server:
        ws = websocket.create_connection(
            server.url.replace("http://", "ws://") + "/live/fal-ai/fast-lcm-diffusion/ws",
            timeout=15)
        try:
            for n in range(2):
                ws.send(json.dumps({"prompt": f"frame {n}", "num_inference_steps": 1}))
                while json.loads(ws.recv())["type"] != "result":
                    pass
            for _ in range(2):  # refused, again and again, on the same socket
                ws.send(json.dumps({"prompt": "one more", "num_inference_steps": 1}))
                message = json.loads(ws.recv())
                while message["type"] == "timings":
                    message = json.loads(ws.recv())
                assert message["type"] == "error" and message["error"] == "rate_limited"
                assert 1 <= message["retry_after"] <= 60
                assert "2 per 1 minute" in message["reason"]
            assert ws.connected
        finally:
            ws.close()


# -- who is counted --------------------------------------------------------------------------


def test_ones_own_machine_gets_generous_defaults(tmp_path):
    # No access control, a loopback caller: 31 submits in a minute pass the default
    # (30/minute for a team), as a person's own scripts may need.
    with serve_app(config(tmp_path)) as server:
        for n in range(31):
            answer = proxy(server, "unused", "POST", SUBMIT_URL,
                           data=json.dumps({"prompt": f"{n}", "num_inference_steps": 1}))
            assert answer.status_code == 200, (n, answer.text)


def test_behind_a_trusted_proxy_the_forwarded_address_counts(tmp_path):
    with serve_app(config(tmp_path, FALWEB_AUTH="header", FALWEB_TRUSTED_PROXIES="127.0.0.1",
                          FALWEB_LIMIT_PROXY="2/minute")) as server:
        def call(user, forwarded):
            return requests.get(server.url + PROXY, timeout=10, headers={
                TARGET: "https://queue.fal.run/fal-ai/fast-sdxl/requests/x/status",
                "X-Forwarded-User": user, "X-Forwarded-For": f"198.51.100.1, {forwarded}"})

        assert call("carol", "203.0.113.5").status_code == 404  # counted, then not found
        assert call("carol", "203.0.113.5").status_code == 404
        assert_fal_429(call("carol", "203.0.113.9"), "2 per 1 minute")  # carol is over
        assert_fal_429(call("dave", "203.0.113.5"), "2 per 1 minute")  # so is that address
        assert call("dave", "203.0.113.6").status_code == 404


def test_limits_off_or_empty_refuse_nothing(tmp_path):
    for extra in ({"FALWEB_LIMITS_ENABLED": False, "FALWEB_LIMIT_PROXY": "1/minute"},
                  {"FALWEB_LIMIT_PROXY": ""}):
        with serve_app(config(tmp_path, **extra)) as server:
            for _ in range(3):
                answer = proxy(server, "unused", "GET", f"{SUBMIT_URL}/requests/x/status")
                assert answer.status_code == 404


def test_a_failing_storage_falls_back_to_counting_in_the_process(tmp_path, monkeypatch,
                                                                 caplog):
    def broken(self, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    with serve_app(config(tmp_path, FALWEB_LIMIT_PROXY="2/minute")) as server:
        monkeypatch.setattr(SQLiteStorage, "incr", broken)
        for _ in range(2):
            answer = proxy(server, "unused", "GET", f"{SUBMIT_URL}/requests/x/status")
            assert answer.status_code == 404
        assert_fal_429(proxy(server, "unused", "GET", f"{SUBMIT_URL}/requests/x/status"),
                       "2 per 1 minute")
    assert any("rate-limit storage failed" in r.getMessage() for r in caplog.records)


def test_proxy_kinds():
    assert limits.proxy_kinds("POST", SUBMIT_URL) == ["proxy", "submits"]
    assert limits.proxy_kinds("POST", "https://fal.run/fal-ai/x/stream") == ["proxy", "submits"]
    assert limits.proxy_kinds("GET", f"{SUBMIT_URL}/requests/r/status") == ["proxy"]
    assert limits.proxy_kinds("PUT", f"{SUBMIT_URL}/requests/r/cancel") == ["proxy"]
    assert limits.proxy_kinds("POST", INITIATE_URL) == ["proxy", "uploads"]
    assert limits.proxy_kinds(
        "POST", "https://rest.fal.ai/storage/upload/initiate-multipart") == ["proxy", "uploads"]
    assert limits.proxy_kinds(
        "POST", "https://rest.fal.ai/storage/upload/complete-multipart") == ["proxy"]
    assert limits.proxy_kinds("POST", "https://rest.fal.ai/tokens/") == ["proxy"]
