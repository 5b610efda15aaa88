"""Access control over real sockets: who may use the app, and whose requests are whose."""

import json
import re
import subprocess
import sys

import pytest
import requests
import websocket

from falweb.testing import serve_app
from falweb.testing import wait_until

PROXY = "/api/fal/proxy"
TARGET = "x-fal-target-url"


def config(tmp_path, **extra):
    return {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
            "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0, **extra}


@pytest.fixture
def team(tmp_path):
    """The app in password mode with alice, bob and an admin; CSRF on, as in production."""
    from falweb.users import Users

    (tmp_path / "instance").mkdir(exist_ok=True)
    store = Users(str(tmp_path / "instance"))
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        store.add(name, f"{name}-password", admin=admin)
    with serve_app(config(tmp_path)) as server:
        server.store = store
        yield server


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def login(server, name, password=None):
    session = requests.Session()
    page = session.get(server.url + "/login", timeout=10).text
    answer = session.post(server.url + "/login", timeout=10, allow_redirects=False, data={
        "name": name, "password": password or f"{name}-password", "csrf_token": csrf_of(page),
        "next": "/history"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/history", answer.text
    return session


def submit_form(server, session, prompt="mine"):
    form = session.get(server.url + "/models/fal-ai/fast-sdxl", timeout=10).text
    answer = session.post(server.url + "/models/fal-ai/fast-sdxl", timeout=30,
                          allow_redirects=False,
                          data={"prompt": prompt, "num_inference_steps": "1",
                                "csrf_token": csrf_of(form)})
    assert answer.status_code == 303, answer.text
    return answer.headers["Location"].rsplit("/", 1)[1]


def wait_finished(server, session, request_id):
    def finished():
        page = session.get(f"{server.url}/requests/{request_id}/status", timeout=10,
                           headers={"HX-Request": "true"})
        return page.status_code == 286
    wait_until(finished, timeout=20, message=f"{request_id} to finish")


# -- safe by default --------------------------------------------------------------------------


def test_listening_beyond_loopback_without_users_refuses_everyone(tmp_path):
    # Bound to every interface, reached over loopback: the app cannot know who else can
    # reach it, so it generates for nobody until its owner sets access control up.
    with serve_app(config(tmp_path), host="0.0.0.0") as server:
        base = f"http://127.0.0.1:{server.port}"
        page = requests.get(base + "/", timeout=10)
        assert page.status_code == 403 and "FALWEB_PASSWORD" in page.text
        assert requests.post(base + PROXY, headers={TARGET: "https://fal.run/fal-ai/x"},
                             timeout=10).status_code == 403
        assert requests.post(base + "/local/queue/fal-ai/fast-sdxl", json={"prompt": "x"},
                             timeout=10).status_code == 401
        assert requests.get(base + "/healthz", timeout=10).status_code == 200


def test_a_reverse_proxy_in_front_counts_as_the_outside_world(tmp_path):
    with serve_app(config(tmp_path)) as server:
        assert requests.get(server.url + "/", timeout=10).status_code == 200  # this machine
        forwarded = requests.get(server.url + "/", timeout=10,
                                 headers={"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 403


# -- every route refuses an anonymous caller --------------------------------------------------


def test_every_route_refuses_an_anonymous_caller(team):
    alice = login(team, "alice")
    request_id = submit_form(team, alice)
    wait_finished(team, alice, request_id)
    base = team.url
    anonymous = requests.Session()
    for path in ("/", "/history", "/models/fal-ai/fast-sdxl", f"/requests/{request_id}",
                 f"/requests/{request_id}/status", f"/requests/{request_id}/images/0",
                 "/live/", "/live/fal-ai/fast-lcm-diffusion", "/account"):
        answer = anonymous.get(base + path, timeout=10, allow_redirects=False)
        assert answer.status_code == 303 and "/login" in answer.headers["Location"], path
    for path in (f"/requests/{request_id}/cancel", f"/requests/{request_id}/rerun",
                 f"/history/{request_id}/delete", "/models/fal-ai/fast-sdxl"):
        answer = anonymous.post(base + path, data={"prompt": "x"}, timeout=10,
                                allow_redirects=False)
        assert answer.status_code in (303, 400), path  # login redirect, or no CSRF token
    proxied = anonymous.post(base + PROXY, json={"prompt": "x"}, timeout=10,
                             headers={TARGET: "https://queue.fal.run/fal-ai/fast-sdxl"})
    assert proxied.status_code == 401 and proxied.json()["error"] == "Unauthorized"
    for method, path in (("POST", "/local/queue/fal-ai/fast-sdxl"),
                         ("GET", f"/local/queue/fal-ai/fast-sdxl/requests/{request_id}"),
                         ("PUT", f"/local/queue/fal-ai/fast-sdxl/requests/{request_id}/cancel"),
                         ("POST", "/local/run/fal-ai/fast-sdxl"),
                         ("POST", "/local/rest/storage/upload/initiate"),
                         ("POST", "/local/rest/tokens/")):
        answer = anonymous.request(method, base + path, json={"prompt": "x"}, timeout=10)
        assert answer.status_code == 401, (method, path)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(base.replace("http", "ws")
                                    + "/live/fal-ai/fast-lcm-diffusion/ws", timeout=10)
    assert refused.value.status_code == 401
    # Still open: health, the login page, and the file URLs (capability links, as fal's).
    assert anonymous.get(base + "/healthz", timeout=10).status_code == 200
    assert anonymous.get(base + "/login", timeout=10).status_code == 200
    result = alice.get(f"{base}/requests/{request_id}", timeout=10).text
    file_url = re.search(r'src="(/local/cdn/files/[^"]+)"', result)[1]
    assert anonymous.get(base + file_url, timeout=10).status_code == 200


def test_a_cross_site_page_cannot_open_the_live_socket(team):
    alice = login(team, "alice")
    cookie = "; ".join(f"{c.name}={c.value}" for c in alice.cookies)
    url = team.url.replace("http", "ws") + "/live/fal-ai/fast-lcm-diffusion/ws"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10, cookie=cookie,
                                    origin="https://evil.example")
    assert refused.value.status_code == 403
    ws = websocket.create_connection(url, timeout=10, cookie=cookie, origin=team.url)
    try:
        ws.send(json.dumps({"prompt": "mine", "num_inference_steps": 1}))
        while json.loads(ws.recv())["type"] != "result":
            pass
    finally:
        ws.close()


# -- one user cannot reach another's requests ------------------------------------------------


def test_a_user_cannot_reach_another_users_request_in_any_way(team):
    alice, bob, root = login(team, "alice"), login(team, "bob"), login(team, "root")
    request_id = submit_form(team, alice, prompt="alice secret fox")
    wait_finished(team, alice, request_id)
    base = team.url
    bob_csrf = csrf_of(bob.get(base + "/models/fal-ai/fast-sdxl", timeout=10).text)
    for path in (f"/requests/{request_id}", f"/requests/{request_id}/status",
                 f"/requests/{request_id}/images/0", f"/history/{request_id}/row",
                 f"/models/fal-ai/fast-sdxl?from={request_id}"):
        answer = bob.get(base + path, timeout=10)
        assert "alice secret fox" not in answer.text, path
        if "?from=" not in path:
            assert answer.status_code == 404, path
    for path in (f"/requests/{request_id}/cancel", f"/requests/{request_id}/rerun",
                 f"/history/{request_id}/delete"):
        answer = bob.post(base + path, data={"csrf_token": bob_csrf}, timeout=10,
                          allow_redirects=False)
        assert answer.status_code == 404, path
    assert "alice secret fox" not in bob.get(base + "/history", timeout=10).text
    assert "alice secret fox" not in bob.get(base + "/", timeout=10).text
    # Nothing was deleted or re-run on alice's behalf; the admin sees everything.
    assert "alice secret fox" in alice.get(base + "/history", timeout=10).text
    assert "alice secret fox" in root.get(base + "/history", timeout=10).text
    assert root.get(f"{base}/requests/{request_id}", timeout=10).status_code == 200


def test_requests_made_through_the_proxy_belong_to_their_maker(team):
    alice_token = team.store.create_token("alice", "script")
    bob_token = team.store.create_token("bob")
    base = team.url

    def proxy(token, method, target, **kwargs):
        return requests.request(method, base + PROXY, timeout=10, **kwargs, headers={
            TARGET: target, "Authorization": f"Key {token}", "Content-Type": "application/json"})

    submitted = proxy(alice_token, "POST", "https://queue.fal.run/fal-ai/fast-sdxl",
                      data=json.dumps({"prompt": "via proxy", "num_inference_steps": 1}))
    assert submitted.status_code == 200, submitted.text
    request_id = submitted.json()["request_id"]
    status_url = f"https://queue.fal.run/fal-ai/fast-sdxl/requests/{request_id}/status"
    assert proxy(alice_token, "GET", status_url).status_code in (200, 202)
    for method, url in (("GET", status_url),
                        ("GET", status_url.rsplit("/status", 1)[0]),
                        ("PUT", status_url.rsplit("/status", 1)[0] + "/cancel")):
        assert proxy(bob_token, method, url).status_code == 404, url
    # A token that was revoked is nobody's.
    token_id = team.store.tokens("alice")[0]["id"]
    team.store.revoke_token("alice", token_id)
    assert proxy(alice_token, "GET", status_url).status_code == 401


# -- login ---------------------------------------------------------------------------------


def test_login_guessing_is_throttled(team):
    session = requests.Session()
    csrf = csrf_of(session.get(team.url + "/login", timeout=10).text)
    codes = []
    for _ in range(6):
        answer = session.post(team.url + "/login", timeout=10, allow_redirects=False,
                              data={"name": "alice", "password": "guess", "csrf_token": csrf})
        codes.append(answer.status_code)
    assert codes == [401] * 5 + [429]
    assert int(answer.headers["Retry-After"]) >= 1
    # Locked out: even the right password waits.
    right = session.post(team.url + "/login", timeout=10, allow_redirects=False,
                         data={"name": "alice", "password": "alice-password",
                               "csrf_token": csrf})
    assert right.status_code == 429


def test_login_sets_a_safe_cookie_and_logout_ends_the_session(team):
    alice = login(team, "alice")
    cookie = next(c for c in alice.cookies if c.name == "session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    raw = alice.get(team.url + "/history", timeout=10)
    assert raw.status_code == 200
    csrf = csrf_of(raw.text)
    assert alice.post(team.url + "/logout", data={"csrf_token": csrf}, timeout=10,
                      allow_redirects=False).status_code == 303
    assert alice.get(team.url + "/history", timeout=10,
                     allow_redirects=False).status_code == 303


def test_login_never_redirects_off_site(team):
    session = requests.Session()
    csrf = csrf_of(session.get(team.url + "/login", timeout=10).text)
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = session.post(team.url + "/login", timeout=10, allow_redirects=False, data={
            "name": "bob", "password": "bob-password", "csrf_token": csrf, "next": evil})
        assert answer.headers["Location"] == "/", evil
        csrf = csrf_of(session.get(team.url + "/login", timeout=10).text) \
            if answer.status_code != 303 else csrf_of(session.get(
                team.url + "/history", timeout=10).text)


def test_one_password_for_the_one_person_case(tmp_path):
    with serve_app(config(tmp_path, FALWEB_PASSWORD="correct horse battery")) as server:
        assert requests.get(server.url + "/", timeout=10,
                            allow_redirects=False).status_code == 303
        session = login(server, "admin", "correct horse battery")
        assert session.get(server.url + "/", timeout=10).status_code == 200


# -- a trusted reverse proxy ------------------------------------------------------------------


def test_a_trusted_header_counts_only_from_the_listed_proxy(tmp_path):
    trusted = config(tmp_path, FALWEB_AUTH="header", FALWEB_TRUSTED_PROXIES="127.0.0.1/32",
                     FALWEB_ADMIN_USERS="boss")
    with serve_app(trusted) as server:
        page = requests.get(server.url + "/history", headers={"X-Forwarded-User": "carol"},
                            timeout=10)
        assert page.status_code == 200 and "carol" in page.text
        assert requests.get(server.url + "/history", timeout=10,
                            allow_redirects=False).status_code in (303, 401)
    elsewhere = config(tmp_path, FALWEB_AUTH="header", FALWEB_TRUSTED_PROXIES="192.0.2.7")
    with serve_app(elsewhere) as server:
        # The same header from an address that is not the proxy's: ignored.
        forged = requests.get(server.url + "/history", headers={"X-Forwarded-User": "carol"},
                              timeout=10, allow_redirects=False)
        assert forged.status_code == 303 and "/login" in forged.headers["Location"]


# -- the users command ------------------------------------------------------------------------


def test_users_command_adds_lists_makes_tokens_and_removes(tmp_path):
    env = {"FALWEB_INSTANCE_PATH": str(tmp_path / "instance"), "PATH": "/usr/bin:/bin"}

    def falweb(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "falweb.cli", "users", *args],
                              input=stdin, capture_output=True, text=True, env=env, timeout=60)

    added = falweb("add", "dana", "--admin", "--password-stdin", stdin="dana-password\n")
    assert added.returncode == 0 and "dana saved (admin)" in added.stdout
    assert falweb("add", "eve", "--password-stdin", stdin="short\n").returncode == 1
    token = falweb("token", "dana", "--label", "ci").stdout.strip()
    assert token.startswith("falweb_")
    listed = falweb("list").stdout
    assert listed.startswith("dana\tadmin\t1 token(s)")
    assert "dana-password" not in listed and token not in listed
    with serve_app(config(tmp_path)) as server:
        assert requests.get(server.url + "/history", timeout=10, headers={
            "Authorization": f"Bearer {token}"}).status_code == 200
    assert falweb("remove", "dana").returncode == 0
    assert falweb("remove", "dana").returncode == 1


def test_account_page_makes_a_token_shown_once(team):
    alice = login(team, "alice")
    page = alice.get(team.url + "/account", timeout=10).text
    made = alice.post(team.url + "/account", timeout=10,
                      data={"label": "notebook", "csrf_token": csrf_of(page)}).text
    token = re.search(r'id="token-value">(falweb_[^<]+)<', made)[1]
    again = alice.get(team.url + "/account", timeout=10).text
    assert token not in again and "notebook" in again
    assert requests.get(team.url + "/history", timeout=10,
                        headers={"Authorization": f"Bearer {token}"}).status_code == 200
