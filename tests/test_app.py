"""The app factory: config layers, backend choice, /healthz, FALWEB_LOCAL_URL."""

import json
import logging

import pytest
import requests

from falweb import backend
from falweb import create_app
from falweb.local import runtime_of
from falweb.testing import ServerThread
from tests.conftest import TEST_FAL_KEY


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND", "FALWEB_LOCAL_URL",
                "FALWEB_INSTANCE_PATH", "FALWEB_LOCAL_STEP_DELAY"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def close(app):
    local_app = backend.local_app(app)
    if local_app is not None:
        runtime_of(local_app).close()


def test_no_key_means_the_embedded_local_runtime(clean_env, tmp_path):
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path)})
    try:
        assert app.config["FALWEB_BACKEND"] == "local"
        assert backend.local_app(app) is not None
        answer = app.test_client().get("/healthz")
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["backend"] == "local" and body["local"]["status"] == "ok"
        assert body["local"]["synthetic"] is True and body["version"]
        runtime = app.test_client().get("/local/healthz")
        assert runtime.status_code == 200
    finally:
        close(app)


def test_a_key_means_fal_and_never_shows(clean_env, tmp_path):
    clean_env.setenv("FAL_KEY", TEST_FAL_KEY)
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path)})
    assert app.config["FALWEB_BACKEND"] == "fal"
    assert backend.local_app(app) is None
    answer = app.test_client().get("/healthz")
    assert answer.get_json()["backend"] == "fal" and answer.get_json()["credentials"] is True
    assert TEST_FAL_KEY not in answer.get_data(as_text=True)
    assert TEST_FAL_KEY.split(":")[1] not in answer.get_data(as_text=True)
    assert app.test_client().get("/local/healthz").status_code == 404


def test_key_id_and_secret_count_as_a_key(clean_env, tmp_path):
    clean_env.setenv("FAL_KEY_ID", "id")
    clean_env.setenv("FAL_KEY_SECRET", "secret")
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path)})
    assert app.config["FALWEB_BACKEND"] == "fal"


def test_config_layers_in_order(clean_env, tmp_path):
    (tmp_path / "config.py").write_text("FALWEB_POLL_INTERVAL = 2.0\nFALWEB_HTTP_TIMEOUT = 9.0\n"
                                        "FALWEB_LOCAL_WORKERS = 1\n")
    clean_env.setenv("FALWEB_INSTANCE_PATH", str(tmp_path))
    clean_env.setenv("FALWEB_HTTP_TIMEOUT", "12.5")
    app = create_app({"FALWEB_LOCAL_WORKERS": 3})
    try:
        assert app.instance_path == str(tmp_path)
        assert app.config["FALWEB_POLL_INTERVAL"] == 2.0  # instance config over defaults
        assert app.config["FALWEB_HTTP_TIMEOUT"] == 12.5  # environment over instance config
        assert app.config["FALWEB_LOCAL_WORKERS"] == 3  # test config over everything
        assert app.config["FALWEB_LOCAL_STEP_DELAY"] == 0.02  # the default
    finally:
        close(app)


def test_bad_settings_fail_fast_naming_the_key(clean_env, tmp_path):
    clean_env.setenv("FALWEB_LOCAL_WORKERS", "many")
    with pytest.raises(ValueError, match="FALWEB_LOCAL_WORKERS"):
        create_app({"FALWEB_INSTANCE_PATH": str(tmp_path)})
    clean_env.delenv("FALWEB_LOCAL_WORKERS")
    with pytest.raises(ValueError, match="FALWEB_BACKEND"):
        create_app({"FALWEB_INSTANCE_PATH": str(tmp_path), "FALWEB_BACKEND": "replicate"})


def test_local_url_points_the_app_at_a_runtime_elsewhere(clean_env, tmp_path, local_runtime):
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path),
                      "FALWEB_LOCAL_URL": local_runtime.url})
    assert backend.local_app(app) is None
    client = app.test_client()
    assert client.get("/local/healthz").status_code == 404  # nothing mounted
    body = client.get("/healthz").get_json()
    assert body["local"]["status"] == "ok" and body["local_url"] == local_runtime.url

    with app.test_request_context():
        assert backend.hosts().queue("/fal-ai/x") == f"{local_runtime.url}/queue/fal-ai/x"


def test_unreachable_local_url_is_reported(clean_env, tmp_path):
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path),
                      "FALWEB_LOCAL_URL": "http://127.0.0.1:9"})
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["local"]["status"] == "unreachable"


def test_embedded_runtime_answers_with_urls_under_local(clean_env, tmp_path):
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path), "FALWEB_LOCAL_STEP_DELAY": 0.0})
    with ServerThread(app) as server:
        body = requests.post(f"{server.url}/local/queue/fal-ai/fast-sdxl",
                             json={"prompt": "x", "num_inference_steps": 1,
                                   "image_size": "square"}, timeout=10).json()
        assert body["status_url"].startswith(f"{server.url}/local/queue/fal-ai/fast-sdxl/")
        from tests.local_helpers import wait_status

        wait_status(body["status_url"])
        result = requests.get(body["response_url"], timeout=10).json()
        assert result["images"][0]["url"].startswith(f"{server.url}/local/cdn/files/")
        assert requests.get(result["images"][0]["url"], timeout=10).status_code == 200
    close(app)


def test_logs_go_to_stdout_without_the_key(clean_env, tmp_path, capsys):
    clean_env.setenv("FAL_KEY", TEST_FAL_KEY)
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path)})
    logging.getLogger("falweb").info("hello from the test")
    app.test_client().get("/healthz")
    out = capsys.readouterr().out
    assert "hello from the test" in out
    assert TEST_FAL_KEY not in out
    assert json.dumps(TEST_FAL_KEY)[1:-1] not in out


def test_public_url_is_what_the_embedded_runtime_writes_in_answers(clean_env, tmp_path):
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path), "FALWEB_LOCAL_STEP_DELAY": 0.0,
                      "FALWEB_PUBLIC_URL": "https://gen.example.com/"})
    with ServerThread(app) as server:
        body = requests.post(f"{server.url}/local/queue/fal-ai/fast-sdxl",
                             json={"prompt": "x", "num_inference_steps": 1,
                                   "image_size": "square"}, timeout=10).json()
        assert body["status_url"].startswith("https://gen.example.com/local/queue/fal-ai/")
    close(app)


def test_synthetic_label_follows_the_engine(clean_env, tmp_path):
    app = create_app({"FALWEB_INSTANCE_PATH": str(tmp_path), "TESTING": True,
                      "WTF_CSRF_ENABLED": False, "FALWEB_HISTORY_RECONCILE": False})
    client = app.test_client()
    try:
        assert b"badge--synthetic" in client.get("/").data
        assert client.get("/healthz").get_json()["synthetic"] is True
        # An engine that draws real model outputs (the diffusers one) is not labelled.
        backend.embedded_runtime(app).engine.synthetic = False
        assert b"badge--synthetic" not in client.get("/").data
        assert client.get("/healthz").get_json()["synthetic"] is False
    finally:
        close(app)
