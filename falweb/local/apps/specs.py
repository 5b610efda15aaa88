"""Which apps the runtime hosts: ``FALWEB_APPS`` and the instance folder's ``apps.json``.

An app is named ``FILE::Class`` (as ``fal run`` names it). Each entry may also give its
endpoint id (``owner/app``; default ``local/<app-name>``, the app's ``name=`` or the name fal
derives from the class)
and the virtualenv it runs in (default: ``FALWEB_APPS_VENV`` for fal apps; falweb's own
interpreter for native ``falweb.apps`` apps, which need nothing else).

``FALWEB_APPS`` holds a list of ``"FILE::Class"`` strings or ``{"app", "id", "venv"}``
objects (JSON), or a comma-separated list of ``FILE::Class``; ``falweb apps add`` writes
``<instance>/local/apps.json`` in the same shape.
"""

import json
import os
import re
import sys
from dataclasses import asdict
from dataclasses import dataclass

APPS_FILE = "apps.json"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PART = re.compile(r"[A-Z][a-z]*")


class SpecError(ValueError):
    """An app entry that cannot be used; the message names the entry and the reason."""


def fal_app_name(class_name):
    """The name fal gives a class without ``name=``, by fal's own rule: each capital starts
    a part (``MyGoodApp`` → ``my-good-app``, ``ONNXModel`` → ``o-n-n-x-model``); a name
    without capitals splits on ``_``."""
    parts = _PART.findall(class_name)
    if parts:
        return "-".join(p.lower() for p in parts)
    return "-".join(p.lower() for p in class_name.split("_") if p) or class_name.lower()


def declared_name(path, class_name):
    """The ``name=`` keyword of ``class <class_name>(..., name="...")`` in ``path``, read
    without importing the file (it needs the app's own virtualenv); None when absent."""
    import ast

    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for keyword in node.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant) \
                        and isinstance(keyword.value.value, str):
                    return keyword.value.value
    return None


@dataclass(frozen=True)
class AppSpec:
    app: str          # FILE::Class
    id: str           # owner/app
    venv: str         # virtualenv folder, or "" for falweb's own interpreter
    native: bool

    @property
    def file(self):
        return self.app.rsplit("::", 1)[0]

    @property
    def class_name(self):
        return self.app.rsplit("::", 1)[1]

    @property
    def python(self):
        if not self.venv:
            return sys.executable
        return os.path.join(self.venv, "Scripts" if os.name == "nt" else "bin", "python")

    def as_entry(self):
        return {k: v for k, v in asdict(self).items() if k != "native"}


def _is_native(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return "falweb.apps" in text and not re.search(r"^\s*(import fal\b|from fal\b)", text, re.M)


def make_spec(app, id=None, venv=None, default_venv=""):
    """An :class:`AppSpec` from one entry's parts; :class:`SpecError` naming what is wrong."""
    if not isinstance(app, str) or "::" not in app:
        raise SpecError(f"app {app!r}: expected FILE::Class (e.g. examples/app.py::MyApp)")
    file, class_name = app.rsplit("::", 1)
    if not file or not class_name.isidentifier():
        raise SpecError(f"app {app!r}: expected FILE::Class with a Python class name")
    file = os.path.abspath(file)
    if id is None or id == "":
        id = f"local/{declared_name(file, class_name) or fal_app_name(class_name)}"
    if not isinstance(id, str) or not _ID.match(id):
        raise SpecError(f"app {app!r}: id {id!r} must be owner/app (letters, digits, . _ -)")
    native = _is_native(file)
    if venv is None or venv == "":
        venv = "" if native else (default_venv or "")
    venv = os.path.abspath(venv) if venv else ""
    return AppSpec(app=f"{file}::{class_name}", id=id, venv=venv, native=native)


def _entries(value):
    if not value:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise SpecError(f"FALWEB_APPS: not valid JSON ({exc})") from None
        else:
            value = [item.strip() for item in text.split(",") if item.strip()]
    if not isinstance(value, list):
        raise SpecError("FALWEB_APPS: expected a list of FILE::Class entries")
    return value


def parse_specs(value, default_venv=""):
    """The specs of ``value`` (a setting's value); ids must be unique."""
    specs = []
    for entry in _entries(value):
        if isinstance(entry, str):
            specs.append(make_spec(entry, default_venv=default_venv))
        elif isinstance(entry, dict):
            unknown = set(entry) - {"app", "id", "venv"}
            if unknown:
                raise SpecError(f"app entry {entry!r}: unknown keys {sorted(unknown)}")
            specs.append(make_spec(entry.get("app"), entry.get("id"), entry.get("venv"),
                                   default_venv))
        else:
            raise SpecError(f"app entry {entry!r}: expected FILE::Class or an object")
    seen = set()
    for spec in specs:
        if spec.id in seen:
            raise SpecError(f"two apps have the endpoint id {spec.id!r}; give one an id")
        seen.add(spec.id)
    return specs


def apps_file(instance_path):
    return os.path.join(instance_path, "local", APPS_FILE)


def read_apps_file(instance_path):
    """The entries ``falweb apps add`` saved ([] when none)."""
    try:
        with open(apps_file(instance_path), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise SpecError(f"{apps_file(instance_path)}: not valid JSON ({exc})") from None


def write_apps_file(instance_path, entries):
    path = apps_file(instance_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=2)
    os.replace(tmp, path)


def configured_specs(config):
    """Every app the runtime with ``config`` hosts: FALWEB_APPS, then apps.json."""
    default_venv = config.get("FALWEB_APPS_VENV") or ""
    entries = _entries(config.get("FALWEB_APPS")) + read_apps_file(
        config["FALWEB_INSTANCE_PATH"])
    return parse_specs(entries, default_venv)
