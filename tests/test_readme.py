"""Every Python example in the README runs against a live app, as a reader would run it."""

import os
import re
import subprocess
import sys

import pytest

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


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(index, live_server, tmp_path):
    code = python_blocks()[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAL_KEY", "FALWEB_"))}
    env["FALWEB_LOCAL_URL"] = live_server.url + "/local"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
