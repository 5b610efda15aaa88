"""Hosted apps that fail: a killed process, an import error, a crash in setup, an app that
never answers /health, a wrong output. Each gives a clear state and error — on /healthz, in
the app's log and in the request's result — and no request hangs."""

import time

import pytest
import requests

from falweb.testing import wait_until
from tests.apps_helpers import EXAMPLES
from tests.apps_helpers import TEST_APPS
from tests.apps_helpers import WebhookReceiver
from tests.apps_helpers import hosting
from tests.apps_helpers import require_fal_sdk
from tests.local_helpers import wait_status

pytestmark = pytest.mark.slow

T2I = "local/text-to-image"
APPS = [f"{EXAMPLES}/fal_text_to_image.py::TextToImage",
        f"{TEST_APPS}/import_error.py::ImportError_",
        f"{TEST_APPS}/bad_apps.py::SetupCrash",
        f"{TEST_APPS}/bad_apps.py::WrongOutput",
        f"{TEST_APPS}/bad_apps.py::Flaky"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_fal_sdk()
    with hosting(tmp_path_factory.mktemp("bad-apps"), APPS) as server:
        yield server


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """A runtime that gives its app 3 s to answer /health (the app never does)."""
    require_fal_sdk()
    with hosting(tmp_path_factory.mktemp("never-healthy"),
                 [f"{TEST_APPS}/bad_apps.py::NeverHealthy"],
                 FALWEB_APPS_STARTUP_SECONDS=3) as server:
        yield server


def app_state(server, app_id, state):
    def reached():
        apps = {a["id"]: a for a in requests.get(f"{server.url}/healthz", timeout=10
                                                 ).json()["apps"]}
        return apps[app_id] if apps[app_id]["state"] == state else None

    return wait_until(reached, timeout=60, message=f"{app_id} {state}")


def failed_request(server, app_id):
    """Submit to ``app_id``: the result, once COMPLETED (never a hung request)."""
    answer = requests.post(f"{server.url}/queue/{app_id}", json={"prompt": "x"}, timeout=10)
    assert answer.status_code == 200
    status = wait_status(answer.json()["status_url"], timeout=30)
    result = requests.get(answer.json()["response_url"], timeout=10)
    return status, result


@pytest.mark.parametrize(("runtime", "app_id", "cause"), [
    ("server", "local/import-error", "ModuleNotFoundError: No module named "
                                     "'falweb_test_module_that_does_not_exist'"),
    ("server", "local/setup-crash", "RuntimeError: the weights file is missing"),
    ("impatient", "local/never-healthy", "did not answer /health within 3 s"),
])
def test_an_app_that_never_becomes_healthy_says_why_everywhere(request, runtime, app_id, cause):
    server = request.getfixturevalue(runtime)
    app = app_state(server, app_id, "failed")
    assert cause in app["error"]
    status, result = failed_request(server, app_id)
    assert result.status_code == 503
    assert status["error_type"] == "app_unavailable" and cause in status["error"]
    assert cause in result.json()["detail"]
    run = requests.post(f"{server.url}/run/{app_id}", json={"prompt": "x"}, timeout=10)
    assert run.status_code == 503 and cause in run.json()["detail"]


def test_a_failing_apps_traceback_is_in_its_log(server):
    app_state(server, "local/setup-crash", "failed")
    lines = [line["message"] for line in server.runtime.apps.logs("local/setup-crash")]
    assert any("RuntimeError: the weights file is missing" in line for line in lines)


def test_a_wrong_output_is_the_requests_error(server):
    app_state(server, "local/wrong-output", "healthy")
    status, result = failed_request(server, "local/wrong-output")
    assert result.status_code == 500
    assert status["error_type"] == "app_error"
    assert "local/wrong-output answered 500" in status["error"]


def test_killing_the_app_mid_request_reruns_it_once_and_delivers_one_webhook(server):
    before = app_state(server, T2I, "healthy")
    receiver = WebhookReceiver()
    try:
        server.runtime.allow_webhook_prefix(receiver.url)
        answer = requests.post(f"{server.url}/queue/{T2I}", params={"fal_webhook": receiver.url},
                               json={"prompt": "survivor", "num_inference_steps": 10,
                                     "step_seconds": 0.1, "width": 32, "height": 32},
                               timeout=10)
        status_url = answer.json()["status_url"]

        def printed_a_step():
            logs = requests.get(status_url, params={"logs": 1}, timeout=10).json().get("logs")
            return any(line["message"].startswith("step ") for line in logs or ())

        wait_until(printed_a_step, timeout=30, message="the app's first step")
        server.runtime.apps.by_id[T2I].kill()
        status = wait_status(status_url, timeout=60)
        assert "error" not in status, (status.get("error"), status.get("error_type"))
        messages = [line["message"] for line in status["logs"]]
        reruns = [m for m in messages if m.startswith("The app's process stopped")]
        assert len(reruns) == 1
        assert messages[-1] == "step 10/10"
        after = app_state(server, T2I, "healthy")
        assert after["pid"] != before["pid"] and after["restarts"] == before["restarts"] + 1
        wait_until(lambda: receiver.bodies, timeout=30, message="the webhook")
        time.sleep(0.5)  # a second delivery would follow the first at once
        assert len(receiver.bodies) == 1 and receiver.bodies[0]["status"] == "OK"
        assert receiver.bodies[0]["payload"]["images"][0]["url"].startswith(server.url)
    finally:
        receiver.close()


def test_a_503_is_retried_and_the_app_sees_fals_headers(server):
    app_state(server, "local/flaky", "healthy")
    answer = requests.post(f"{server.url}/queue/local/flaky", json={"prompt": "q"},
                           timeout=10).json()
    status = wait_status(answer["status_url"])
    retries = [line["message"] for line in status["logs"] if "answered 503" in line["message"]]
    assert len(retries) == 2
    result = requests.get(answer["response_url"], timeout=10).json()
    assert result == {"request_id": answer["request_id"], "endpoint": "local/flaky",
                      "attempts": 3}


def test_a_503_with_no_retry_ends_the_request(server):
    app_state(server, "local/flaky", "healthy")
    answer = requests.post(f"{server.url}/queue/local/flaky/final", json={"prompt": "f"},
                           timeout=10).json()
    status = wait_status(answer["status_url"])
    assert status["error"] == "app local/flaky answered 503: gone for good"
    assert not [line for line in status["logs"] if "answered 503" in line["message"]]
    assert requests.get(answer["response_url"], timeout=10).status_code == 503
    direct = requests.post(f"{server.url}/run/local/flaky", json={"prompt": "d"}, timeout=30)
    assert direct.status_code == 200 and direct.json()["attempts"] == 3
