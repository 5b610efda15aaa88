"""The fal SDK internals falweb's bootstrap and uploader rely on, pinned.

``falweb/local/apps/bootstrap.py`` uses names that are not fal's public API
(``App(_allow_init=True)``, ``fal.ref.set_current_app``, ``App._build_app``) and the
uploader socket speaks the SDK's local-uploader protocol. These tests run in the SDK's own
virtualenv (the version ``scripts/test-setup.sh`` pins): when a new SDK changes any of
them, this fails before an app does.
"""

import subprocess
import textwrap

import requests

from tests.apps_helpers import FAL_PYTHON
from tests.apps_helpers import TEST_APPS
from tests.apps_helpers import hosting
from tests.apps_helpers import require_fal_sdk

TESTED_SDK = ("1.83.0",)


def in_sdk(code, env=None, timeout=120):
    done = subprocess.run([str(FAL_PYTHON), "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_sdk_internals_the_bootstrap_uses():
    require_fal_sdk()
    out = in_sdk("""
        import inspect, fal, fal.ref
        from importlib.metadata import version
        print(version("fal"))
        from fastapi.testclient import TestClient
        from pydantic import BaseModel

        class In(BaseModel):
            x: int

        class Probe(fal.App, max_concurrency=3, name="probe"):
            @fal.endpoint("/")
            def run(self, input: In) -> In:
                return input

        assert Probe.app_name == "probe" and Probe.max_concurrency is None
        assert Probe.host_kwargs["max_concurrency"] == 3
        try:
            Probe()
        except Exception:
            pass
        else:
            raise SystemExit("App() without _allow_init is allowed now")
        app = Probe(_allow_init=True)
        fal.ref.set_current_app(app)
        assert fal.ref.get_current_app() is app
        asgi = app._build_app()
        with TestClient(asgi) as client:
            assert client.get("/health").status_code == 200
            answer = client.post("/", json={"x": 2}, headers={"x-fal-request-id": "r"})
            assert answer.json() == {"x": 2}, answer.text
            assert client.post("/", json={"x": "no"}).status_code == 422
            assert "/" in client.get("/openapi.json").json()["paths"]
        from fal.exceptions import RequestCancelledException  # the 499 of a cancelled call
        from fal.toolkit.file import _local_uploader as uploader
        source = inspect.getsource(uploader)
        for needle in ('"/v1/uploads"', '"/v1/upload-sessions"', '"accepted_local"',
                       '"receiving"', "FAL_API_SOCKET", "x-fal-request-id"):
            assert needle in source, needle
        from fal.toolkit.file import file
        assert "FAL_USE_LOCAL_UPLOADER" in inspect.getsource(file)
    """)
    assert out.splitlines()[0] in TESTED_SDK, f"untested fal SDK {out.splitlines()[0]}"


def test_the_sdks_uploads_both_flows_land_in_runtime_storage(tmp_path):
    # The SDK's own uploader functions against the runtime's socket: a single upload and
    # an upload session (body of unknown size), each readable at the URL it was given.
    require_fal_sdk()
    with hosting(tmp_path, [f"{TEST_APPS}/bad_apps.py::WrongOutput"]) as server:
        socket_path = server.runtime.apps.uploader.path
        # As inside a request the runtime forwarded (which names its base URL).
        with server.runtime.apps.tracking("contract-request", server.url):
            out = in_sdk("""
                from fal.toolkit.file import _local_uploader as up
                request = {"x-fal-request-id": "contract-request"}
                one = up.upload("one.txt", b"single body",
                                {"Content-Type": "text/plain", **request},
                                wait_for_completion=True)
                two = up.upload_stream("two.bin", iter([b"chunk-1 ", b"chunk-2"]), request,
                                       wait_for_completion=True)
                print(one)
                print(two)
            """, env={"FAL_API_SOCKET": socket_path, "PATH": "/usr/bin:/bin"})
        one, two = out.split()
        assert one.startswith(f"{server.url}/cdn/files/") and one.endswith("/one.txt")
        first = requests.get(one, timeout=10)
        assert first.content == b"single body"
        assert first.headers["content-type"].startswith("text/plain")
        assert requests.get(two, timeout=10).content == b"chunk-1 chunk-2"

