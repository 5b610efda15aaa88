"""``falweb generate`` end to end against the whole app on a real port."""

import io
import os
import re
import shlex
import subprocess
import sys

import pytest
from PIL import Image

from falweb import generate
from falweb.cli import build_parser
from falweb.testing import serve_local_runtime


@pytest.fixture
def local_url(live_server, monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    url = live_server.url + "/local"
    monkeypatch.setenv("FALWEB_LOCAL_URL", url)
    return url


@pytest.fixture(scope="module")
def stepping_runtime(tmp_path_factory):
    """A local runtime alone whose steps take real time, as a model's do, so that progress
    has something to show while the request runs."""
    with serve_local_runtime({"TESTING": True, "FALWEB_LOCAL_STEP_DELAY": 0.05,
                              "FALWEB_LOCAL_WORKERS": 1,
                              "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("steps"))}
                             ) as server:
        yield server


@pytest.fixture
def use_runtime(monkeypatch):
    """Point ``falweb generate`` at a runtime's base URL, with no fal key around."""
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return lambda url: monkeypatch.setenv("FALWEB_LOCAL_URL", url)


class Terminal(io.StringIO):
    """stderr as an interactive terminal: the bar is redrawn in place."""

    def isatty(self):
        return True


def run_generate(argv, stderr=None):
    args = build_parser().parse_args(["generate", *argv])
    out, err = io.StringIO(), stderr or io.StringIO()
    code = generate.main(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def summary(out):
    """stdout's labelled lines: ``{"request_id": id, "seed": seed, "saved": [paths]}``."""
    found = {"saved": []}
    for line in out.splitlines():
        label, _, value = line.partition(": ")
        if label == "saved":
            found["saved"].append(value)
        else:
            found[label] = value
    return found


def test_generate_downloads_real_images(local_url, tmp_path):
    code, out, err = run_generate([
        "fal-ai/fast-sdxl", "--prompt", "a cat", "--param", "num_images=2",
        "--param", 'image_size={"width": 96, "height": 64}', "--param", "num_inference_steps=3",
        "--param", "format=png", "--out", str(tmp_path / "out")])
    assert code == 0, err
    shown = summary(out)
    request_id, paths = shown["request_id"], shown["saved"]
    assert len(paths) == 2
    for i, path in enumerate(paths):
        assert os.path.basename(path) == f"{request_id}-{i}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (96, 64)
    assert "queued" in err and "3/3" in err and "completed" in err


def test_generate_decodes_sync_mode_data_uris(local_url, tmp_path):
    code, out, err = run_generate([
        "fal-ai/realistic-vision", "--prompt", "x", "--param", "sync_mode=true",
        "--param", "num_inference_steps=2", "--param", "image_size=square",
        "--out", str(tmp_path)])
    assert code == 0, err
    [path] = summary(out)["saved"]
    with Image.open(path) as image:
        assert image.format == "JPEG"


def test_generate_reports_invalid_input_with_the_field_name(local_url, tmp_path):
    code, out, err = run_generate(["fal-ai/fast-sdxl", "--prompt", "x", "--param",
                                   "num_inference_steps=many", "--out", str(tmp_path)])
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith("error: invalid input (num_inference_steps)")


def test_generate_reports_an_unknown_endpoint(local_url, tmp_path):
    code, _, err = run_generate(["fal-ai/nope", "--prompt", "x", "--out", str(tmp_path)])
    assert code == 1 and "HTTP 404" in err


def test_generate_rejects_a_malformed_param(tmp_path):
    code, _, err = run_generate(["fal-ai/fast-sdxl", "--prompt", "x", "--param", "oops"])
    assert code == 2 and "KEY=VALUE" in err


def test_generate_backend_choice(monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND", "FALWEB_LOCAL_URL"):
        monkeypatch.delenv(name, raising=False)
    assert generate.make_client().hosts.local_base == generate.DEFAULT_LOCAL_URL
    monkeypatch.setenv("FAL_KEY", "k")
    assert not generate.make_client().hosts.is_local
    monkeypatch.setenv("FALWEB_BACKEND", "local")
    assert generate.make_client().hosts.is_local


def test_generate_command_in_a_subprocess(local_url, tmp_path):
    env = {**os.environ, "FALWEB_LOCAL_URL": local_url}
    done = subprocess.run(
        [sys.executable, "-m", "falweb.cli", "generate", "fal-ai/flux/dev", "--prompt", "a cat",
         "--param", "num_inference_steps=2", "--param", "image_size=square",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    shown = summary(done.stdout)
    request_id, [path] = shown["request_id"], shown["saved"]
    assert path.startswith(str(tmp_path)) and request_id in path
    with Image.open(path) as image:
        image.verify()


def test_generate_prints_the_seed_with_the_request_id_and_the_paths(
        shared_runtime, use_runtime, tmp_path):
    use_runtime(shared_runtime.url)
    code, out, err = run_generate(["fal-ai/fast-sdxl", "--prompt", "a cat", "--param",
                                   "num_inference_steps=2", "--param", "image_size=square",
                                   "--out", str(tmp_path)])
    assert code == 0, err
    shown = summary(out)
    assert re.fullmatch(r"[0-9a-f-]{36}", shown["request_id"])
    assert re.fullmatch(r"\d+", shown["seed"])
    [path] = shown["saved"]
    assert os.path.basename(path).startswith(shown["request_id"])
    # The seed shown is the one to pass back for the same image.
    code, again, err = run_generate(["fal-ai/fast-sdxl", "--prompt", "a cat", "--param",
                                     "num_inference_steps=2", "--param", "image_size=square",
                                     "--param", f"seed={shown['seed']}", "--out", str(tmp_path)])
    assert code == 0, err
    assert summary(again)["seed"] == shown["seed"]
    with open(path, "rb") as first, open(summary(again)["saved"][0], "rb") as second:
        assert first.read() == second.read()


def test_progress_on_a_terminal_starts_in_the_queue_and_moves_with_every_step(
        stepping_runtime, use_runtime, tmp_path):
    use_runtime(stepping_runtime.url)
    code, _, screen = run_generate(
        ["fal-ai/fast-sdxl", "--prompt", "a cat", "--param", "num_inference_steps=4",
         "--param", "image_size=square", "--out", str(tmp_path)], stderr=Terminal())
    assert code == 0, screen
    # Shown from the start: the queue line, then at once where the request is.
    assert re.match(r"queued [0-9a-f-]{36}\n\r\x1b\[Kin queue", screen), screen
    for step in range(1, 5):
        # Each log line is written on a cleared line above the bar, and the bar, drawn again
        # under it, has moved to that step.
        drawn = rf"\r\x1b\[K  Step {step}/4\n\r\x1b\[K\[[#.]+\] {step}/4\r"
        assert re.search(drawn, screen), screen
    assert screen.endswith(" completed\n")


def test_progress_in_a_pipe_is_plain_lines(stepping_runtime, use_runtime, tmp_path):
    use_runtime(stepping_runtime.url)
    done = subprocess.run(
        [sys.executable, "-m", "falweb.cli", "generate", "fal-ai/fast-sdxl", "--prompt", "a cat",
         "--param", "num_inference_steps=3", "--param", "image_size=square",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr and "\r" not in done.stdout
    shown = summary(done.stdout)
    assert shown["seed"].isdigit()
    lines = done.stderr.splitlines()
    assert lines[:2] == [f"queued {shown['request_id']}", "in queue"]
    steps = [line for line in lines if line.startswith("  Step ")]
    assert steps == ["  Step 1/3", "  Step 2/3", "  Step 3/3"]
    assert lines.index("in progress") < lines.index("  Step 1/3")
    assert lines[-1] == "completed"


def test_the_examples_in_generate_help_run(shared_runtime, use_runtime, tmp_path, capsys):
    use_runtime(shared_runtime.url)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    help_text = capsys.readouterr().out.replace("\\\n", " ")  # a shell line continued
    examples = re.findall(r"^ +(falweb generate .*)$", help_text, re.MULTILINE)
    assert len(examples) >= 2
    for example in examples:
        argv = shlex.split(example)[2:]
        code, out, err = run_generate([*argv, "--out", str(tmp_path)])
        assert code == 0, (example, err)
        assert summary(out)["saved"]
