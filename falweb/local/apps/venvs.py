"""A virtualenv for a fal app, made from its own ``requirements`` (``falweb apps add
--create-venv``), never falweb's environment.

The requirements are read from the class body without importing the file (it needs the
environment being made). fal's SDK is pinned to the version falweb's contract test checks.
"""

import ast
import os
import subprocess
import sys

FAL_SDK = "fal==1.83.0"


class VenvError(Exception):
    """Making the virtualenv failed; the message says which step and why."""


def declared_requirements(path, class_name):
    """The string items of ``requirements = [...]`` in ``class <class_name>`` ([] if none)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError) as exc:
        raise VenvError(f"cannot read {path}: {exc}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                targets = item.targets if isinstance(item, ast.Assign) else (
                    [item.target] if isinstance(item, ast.AnnAssign) else [])
                if any(isinstance(t, ast.Name) and t.id == "requirements" for t in targets) \
                        and isinstance(item.value, ast.List | ast.Tuple):
                    return [e.value for e in item.value.elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            return []
    raise VenvError(f"{path} has no class {class_name!r}")


def create_venv(folder, requirements, python=None, out=None):
    """Make ``folder`` a virtualenv with fal's SDK and ``requirements``; returns ``folder``."""
    python = python or sys.executable
    steps = [([python, "-m", "venv", folder], "creating the virtualenv"),
             ([os.path.join(folder, "bin", "python"), "-m", "pip", "install", "-q", FAL_SDK,
               *requirements], f"installing {' '.join([FAL_SDK, *requirements])}")]
    for command, what in steps:
        if out is not None:
            print(f"{what} …", file=out, flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise VenvError(f"{what} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return folder
