"""Uploads against the local runtime: bytes, paths, file objects, multipart, auto-upload of
binary inputs, and a 200 MiB upload whose memory stays flat."""

import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import requests
from PIL import Image

import falweb.client.storage_api as storage_api

# Keys or a local URL in the environment must not change what these tests talk to.
pytestmark = pytest.mark.usefixtures("no_fal_env")


def fetch(client, url):
    response = requests.get(client.hosts.resolve(url) if url.startswith("https://") else url,
                            timeout=30)
    response.raise_for_status()
    return response


def png_bytes(color=(10, 120, 200), size=(48, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_seed_upload_example(fal_client):
    # const file = new File(["Hello, World!"], "hello.txt", { type: "text/plain" });
    url = fal_client.storage.upload(b"Hello, World!", "text/plain", "hello.txt")
    response = fetch(fal_client, url)
    assert response.content == b"Hello, World!"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_upload_a_path_guesses_the_content_type(fal_client, tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(png_bytes())
    for source in (path, str(path)):
        url = fal_client.storage.upload(source)
        response = fetch(fal_client, url)
        assert response.content == path.read_bytes()
        assert response.headers["Content-Type"] == "image/png"


def test_upload_a_file_object_from_its_position(fal_client, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"HEADER" + os.urandom(300_000))
    with open(path, "rb") as f:
        f.read(6)
        url = fal_client.storage.upload(f)
    assert fetch(fal_client, url).content == path.read_bytes()[6:]
    url = fal_client.storage.upload(io.BytesIO(b"in memory"), content_type="text/plain")
    assert fetch(fal_client, url).content == b"in memory"


def test_upload_refuses_text_mode_files_and_missing_paths(fal_client, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hi")
    with open(path) as f, pytest.raises(TypeError, match="binary mode"):
        fal_client.storage.upload(f)
    with pytest.raises(FileNotFoundError):
        fal_client.storage.upload(tmp_path / "missing.png")


def test_multipart_upload_round_trip(fal_client, monkeypatch, tmp_path):
    # Small thresholds so the multipart flow runs in a fast test; the slow test uses the real ones.
    monkeypatch.setattr(storage_api, "MULTIPART_THRESHOLD", 1024 * 1024)
    monkeypatch.setattr(storage_api, "MULTIPART_CHUNK_SIZE", 256 * 1024)
    data = os.urandom(1024 * 1024 + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    sent = []
    fal_client.transport.session.hooks["response"].append(
        lambda r, *a, **k: sent.append((r.request.method, r.request.url)))
    url = fal_client.storage.upload(path)
    assert fetch(fal_client, url).content == data
    assert any("initiate-multipart" in u for _, u in sent)
    assert sum(1 for m, _ in sent if m == "PUT") == 5
    # an unknown-size stream goes part by part too
    url = fal_client.storage.upload(_Unsized(data), content_type="application/octet-stream")
    assert fetch(fal_client, url).content == data


class _Unsized(io.RawIOBase):
    """A stream that cannot say how long it is (like a pipe)."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, size=-1):
        return self._data.read(size)


def test_auto_upload_of_nested_binary_inputs_into_image_to_image(fal_client, tmp_path):
    path = tmp_path / "source.png"
    path.write_bytes(png_bytes((250, 0, 0), (64, 64)))
    result = fal_client.subscribe("fal-ai/fast-sdxl/image-to-image", {
        "prompt": "a red square", "image_url": path, "num_inference_steps": 2,
        "image_size": {"width": 64, "height": 64}})
    assert result["images"][0]["url"]
    # nested values: bytes, a file object and a path inside lists and dicts
    nested = fal_client.storage.transform_input({
        "a": [b"one", {"b": io.BytesIO(b"two")}], "c": (path,),
        "keep": "data:text/plain;base64,SGk=", "n": 3})
    assert nested["keep"] == "data:text/plain;base64,SGk=" and nested["n"] == 3
    assert fetch(fal_client, nested["a"][0]).content == b"one"
    assert fetch(fal_client, nested["a"][1]["b"]).content == b"two"
    assert fetch(fal_client, nested["c"][0]).content == path.read_bytes()


def test_image_to_image_with_bytes_input(fal_client):
    result = fal_client.run("fal-ai/fast-sdxl/image-to-image", {
        "prompt": "x", "image_url": png_bytes(), "num_inference_steps": 2,
        "image_size": {"width": 64, "height": 64}})
    image = Image.open(io.BytesIO(fetch(fal_client, result["images"][0]["url"]).content))
    assert image.size == (64, 64)


_MEASURE = textwrap.dedent("""
    import json, pathlib, resource, sys, tracemalloc
    from falweb.client import FalClient
    from falweb.hosts import Hosts
    client = FalClient(hosts=Hosts(sys.argv[1]), timeout=120)
    client.storage.upload(b"warm up")  # imports, connection pool
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    url = client.storage.upload(pathlib.Path(sys.argv[2]))
    _, peak = tracemalloc.get_traced_memory()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"url": url, "growth_kib": after - before, "traced_peak": peak}))
""")


@pytest.mark.slow
def test_200_mib_upload_keeps_memory_flat(local_runtime, tmp_path):
    path = tmp_path / "huge.bin"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(200):
            chunk = i.to_bytes(4, "big") + block[4:]
            digest.update(chunk)
            f.write(chunk)
    # The upload runs in its own process so its peak RSS is the client's alone (the runtime
    # receiving the file lives in this one).
    out = subprocess.run([sys.executable, "-c", _MEASURE, local_runtime.url, str(path)],
                         capture_output=True, text=True, timeout=240,
                         cwd=pathlib.Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    # Both measures: peak RSS (what the OS saw) and tracemalloc's peak of Python allocations
    # (exact; a whole-file read would show 200 MiB here).
    assert report["growth_kib"] < 60 * 1024, report
    assert report["traced_peak"] < 60 * 1024 * 1024, report
    print(f"client peak growth: RSS {report['growth_kib'] // 1024} MiB, "
          f"traced {report['traced_peak'] // (1024 * 1024)} MiB")
    got = hashlib.sha256()
    with requests.get(report["url"], stream=True, timeout=60) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1024 * 1024):
            got.update(chunk)
    assert got.hexdigest() == digest.hexdigest()
