"""The shape the code keeps: the local runtime stands alone, the proxy carries no app glue."""

import subprocess
import sys
import textwrap

WEB_APP_MODULES = ("falweb.pages", "falweb.history", "falweb.history_sync", "falweb.webhooks",
                   "falweb.backend", "falweb.live", "falweb.downloads", "falweb.presentation")


def run_python(code, tmp_path):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_local_runtime_runs_with_nothing_of_the_web_app_loaded(tmp_path):
    # A real job through the runtime's HTTP layer, then a look at what Python loaded.
    code = f"""
        import sys, time
        from falweb.local import create_local_app, runtime_of
        app = create_local_app({{"FALWEB_INSTANCE_PATH": {str(tmp_path)!r},
                                "FALWEB_LOCAL_STEP_DELAY": 0.0}})
        client = app.test_client()
        answer = client.post("/queue/fal-ai/fast-sdxl", json={{"prompt": "alone"}})
        assert answer.status_code == 200, answer.text
        status_url = "/queue/fal-ai/fast-sdxl/requests/" + answer.json["request_id"] + "/status"
        for _ in range(500):
            if client.get(status_url).json["status"] == "COMPLETED":
                break
            time.sleep(0.02)
        else:
            raise SystemExit("the job never completed")
        runtime_of(app).close()
        print(",".join(m for m in {WEB_APP_MODULES!r} if m in sys.modules))
    """
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the runtime loaded: {done.stdout.strip()}"


def test_the_proxy_extension_imports_nothing_of_the_app(tmp_path):
    done = run_python(f"""
        import sys
        from flask import Flask
        from falweb.proxy import FalProxy
        FalProxy(Flask("other"))
        print(",".join(m for m in {WEB_APP_MODULES!r} if m in sys.modules))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
