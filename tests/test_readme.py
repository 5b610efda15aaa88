"""Every Python example in the README runs against a live app, as a reader would run it."""

import os
import re
import subprocess
import sys

import pytest

from falweb import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
    """The Python examples of the client section (others name placeholders such as
    ``rate_limiter``, as the seed's own proxy example does)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split("## The Python client", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_has_examples():
    assert len(python_blocks()) >= 4


# Run after the README's cancel example, in its process: the cancelled request ends cancelled.
CANCEL_CHECK = """
final = fal.queue.subscribe_to_status("fal-ai/flux/dev", later.request_id, poll_interval=0.05,
                                      timeout=30)
assert final.error_type == "request_cancelled", final.raw
"""


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(index, no_dns, live_server, tmp_path):
    # no_dns: the example's webhook (example.com) fails at once, in this process, rather
    # than wait on this machine's resolver or reach the network.
    code = python_blocks()[index]
    cancels = "fal.queue.cancel(" in code
    if cancels:
        # A zero-delay job is over in milliseconds: the cancel comes too late (400
        # ALREADY_COMPLETED), or is accepted after the last step and the job completes
        # anyway. Steps of 0.1 s make flux/dev's default 28 steps last 2.8 s, as a real job
        # lasts seconds: the cancel, sent right after the submit, finds it queued or running.
        runtime = backend.embedded_runtime(live_server.app)
        runtime.engine.step_delay = 0.1
        code += CANCEL_CHECK
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_KEY", "FALWEB_"))}
    env["FALWEB_LOCAL_URL"] = live_server.url + "/local"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    if cancels:
        assert "CANCELLATION_REQUESTED" in done.stdout, done.stdout
