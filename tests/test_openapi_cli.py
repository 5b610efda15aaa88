"""``falweb generate`` and ``falweb schema`` for any documented endpoint."""

import argparse
import io
import json
import os

import av
import pytest

from tests.test_generate import run_generate
from tests.test_generate import summary
from tests.test_openapi_catalog import tiny_document


@pytest.fixture
def use_runtime(monkeypatch):
    """Point ``falweb generate`` at a runtime's base URL, with no fal key around."""
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return lambda url: monkeypatch.setenv("FALWEB_LOCAL_URL", url)


def test_generate_a_video_endpoint_saves_the_mp4(shared_runtime, use_runtime, tmp_path):
    use_runtime(shared_runtime.url)
    code, out, err = run_generate([
        "fal-ai/kling-video/v1/standard/text-to-video", "--input", "prompt=a paper boat",
        "--input", "duration=5", "--input", "aspect_ratio=9:16", "--out", str(tmp_path)])
    assert code == 0, err
    shown = summary(out)
    [path] = shown["saved"]
    assert os.path.basename(path) == f"{shown['request_id']}-video.mp4"
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (180, 320)
        assert 4.5 <= float(container.duration / av.time_base) <= 5.5


def test_generate_an_llm_endpoint_prints_its_text(shared_runtime, use_runtime, tmp_path):
    use_runtime(shared_runtime.url)
    code, out, err = run_generate([
        "openrouter/router", "--input", "prompt=say hi", "--input", "model=google/gemini-2.5-flash",
        "--out", str(tmp_path)])
    assert code == 0, err
    assert summary(out)["output"].startswith("[SYNTHETIC PREVIEW")


def test_generate_names_the_missing_field_of_any_endpoint(shared_runtime, use_runtime,
                                                          tmp_path):
    use_runtime(shared_runtime.url)
    code, out, err = run_generate(["openrouter/router", "--input", "prompt=hi",
                                   "--out", str(tmp_path)])
    assert code == 1 and out == ""
    assert "error: invalid input (model)" in err


def run_schema(*argv, environ=None):
    from falweb import schema_cli

    args = argparse.Namespace(endpoint_id=argv[0], json="--json" in argv)
    out, err = io.StringIO(), io.StringIO()
    code = schema_cli.main(args, stdout=out, stderr=err, environ=environ or {})
    return code, out.getvalue(), err.getvalue()


def test_schema_prints_each_field_with_its_constraints():
    code, out, _ = run_schema("fal-ai/kling-video/v1/standard/text-to-video")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "fal-ai/kling-video/v1/standard/text-to-video  (text-to-video)"
    assert "  prompt: text; required" in lines
    assert '  duration: enum; default "5"; one of 5, 10' in lines
    assert '  cfg_scale: number; default 0.5; 0..1' in lines
    assert "      .movement_value: integer (required)" in lines
    code, out, _ = run_schema("fal-ai/flux/dev", "--json")
    assert json.loads(out)["info"]["x-fal-metadata"]["endpointId"] == "fal-ai/flux/dev"


def test_schema_of_an_unknown_endpoint_says_so(tmp_path):
    code, out, err = run_schema("nobody/nothing")
    assert code == 1 and out == "" and "no OpenAPI document" in err


def test_schema_reads_an_instance_document(tmp_path):
    from falweb.openapi import add_directory

    folder = tmp_path / "openapi"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(tiny_document("acme/cli-only")))
    add_directory(str(folder))
    code, out, _ = run_schema("acme/cli-only")
    assert code == 0 and "  speed: number; default 1; 0.5..2" in out
