"""The ``falweb`` command as ``make run`` uses it: a real process on a free port."""

import os
import subprocess
import sys

import pytest
import requests

from falweb.cli import main
from falweb.testing import wait_until


def spawn(args, tmp_path, marker):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_KEY", "FALWEB_"))}
    env.update({"FALWEB_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"})
    log = tmp_path / f"{args[0]}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "falweb.cli", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env)

    def started():
        if marker in log.read_text():
            return True
        assert proc.poll() is None, log.read_text()  # it died: no use waiting
        return False

    try:
        wait_until(started, timeout=30, interval=0.05,
                   message=lambda: f"{marker!r} in the log:\n{log.read_text()}")
    except AssertionError:
        proc.kill()
        raise
    line = next(x for x in log.read_text().splitlines() if marker in x)
    url = line.split(" on ", 1)[1].split()[0].rstrip("/")
    return proc, url


@pytest.mark.slow
def test_serve_answers_index_and_healthz_with_no_key(tmp_path):
    proc, url = spawn(["serve", "--port", "0"], tmp_path, "falweb serving on")
    try:
        health = requests.get(url + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["backend"] == "local"
        index = requests.get(url + "/", timeout=10)
        assert index.status_code == 200
        assert "local" in index.text.lower()
        submit = requests.post(url + "/local/queue/fal-ai/realistic-vision",
                               json={"prompt": "cli", "num_inference_steps": 2}, timeout=10)
        assert submit.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_local_runs_the_runtime_alone(tmp_path):
    proc, url = spawn(["local", "--port", "0"], tmp_path, "local runtime on")
    try:
        assert requests.get(url + "/healthz", timeout=10).json()["status"] == "ok"
        assert requests.get(url + "/", timeout=10).status_code == 404
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_access_log_redacts_stream_tokens(tmp_path):
    proc, url = spawn(["local", "--port", "0"], tmp_path, "local runtime on")
    try:
        token = requests.post(url + "/rest/tokens/", json={"allowed_apps": ["fast-sdxl"]},
                              timeout=10).json()
        requests.post(url + "/run/fal-ai/fast-sdxl/stream", params={"fal_jwt_token": token},
                      json={"prompt": "x", "num_inference_steps": 1, "image_size": "square"},
                      timeout=30)
    finally:
        proc.terminate()
        proc.wait(10)
    log = (tmp_path / "local.log").read_text()
    assert "fal_jwt_token=[redacted]" in log
    assert token not in log


def help_text(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--help"])
    assert exit.value.code == 0
    return capsys.readouterr().out


def test_help_is_plain_text_with_examples(capsys):
    text = help_text([], capsys)
    assert "``" not in text and "`" not in text
    for command in ("serve", "local", "generate"):
        assert command in text
    assert "examples:" in text
    assert "falweb serve" in text and "falweb generate fal-ai/" in text


def test_generate_help_says_what_it_does_which_backend_and_how_params_parse(capsys):
    text = help_text(["generate"], capsys)
    assert "``" not in text and "`" not in text
    assert "progress" in text and "save" in text
    assert "FAL_KEY" in text and "local runtime" in text and "FALWEB_LOCAL_URL" in text
    assert "KEY=VALUE" in text and "JSON" in text
    assert "examples:" in text and text.count("falweb generate fal-ai/") >= 2
