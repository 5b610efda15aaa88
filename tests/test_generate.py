"""``falweb generate`` end to end against the whole app on a real port."""

import io
import os
import subprocess
import sys

import pytest
from PIL import Image

from falweb import generate
from falweb.cli import build_parser


@pytest.fixture
def local_url(live_server, monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    url = live_server.url + "/local"
    monkeypatch.setenv("FALWEB_LOCAL_URL", url)
    return url


def run_generate(argv):
    args = build_parser().parse_args(["generate", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = generate.main(args, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_generate_downloads_real_images(local_url, tmp_path):
    code, out, err = run_generate([
        "fal-ai/fast-sdxl", "--prompt", "a cat", "--param", "num_images=2",
        "--param", 'image_size={"width": 96, "height": 64}', "--param", "num_inference_steps=3",
        "--param", "format=png", "--out", str(tmp_path / "out")])
    assert code == 0, err
    request_id, *paths = out.split()
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
    _, path = out.split()
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
    request_id, path = done.stdout.split()
    assert path.startswith(str(tmp_path)) and request_id in path
    with Image.open(path) as image:
        image.verify()
