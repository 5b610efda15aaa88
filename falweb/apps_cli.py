"""``falweb apps``: add, remove and list the apps the local runtime hosts.

They are saved in ``<instance>/local/apps.json`` (FALWEB_INSTANCE_PATH, else Flask's
``instance`` folder, as for ``falweb users``), beside those the ``FALWEB_APPS`` setting names;
the runtime starts them when it starts. ``falweb apps list`` shows the saved ones, and the
state of each on a running runtime is on its ``/healthz``.
"""

import os
import sys

from falweb.local.apps.specs import SpecError
from falweb.local.apps.specs import make_spec
from falweb.local.apps.specs import read_apps_file
from falweb.local.apps.specs import write_apps_file
from falweb.local.apps.venvs import VenvError
from falweb.local.apps.venvs import create_venv
from falweb.local.apps.venvs import declared_requirements
from falweb.users_cli import instance_path


def main(args, stdout=None, stderr=None):
    """Run ``falweb apps <action>``; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    folder = instance_path()
    try:
        entries = read_apps_file(folder)
        if args.action == "add":
            venv = args.venv
            if args.create_venv:
                venv = _create_venv(args, folder, stderr)
            spec = make_spec(args.app, args.id, venv)
            entries = [e for e in entries if e.get("id") != spec.id]
            entries.append(spec.as_entry())
            write_apps_file(folder, entries)
            where = spec.venv or "falweb's own interpreter (a native app)"
            if not spec.venv and not spec.native:
                where = "FALWEB_APPS_VENV (default .venv-falapps)"
            print(f"app {spec.id} saved: {spec.app}, runs in {where}", file=stdout)
        elif args.action == "remove":
            kept = [e for e in entries if e.get("id") != args.id]
            if len(kept) == len(entries):
                raise SpecError(f"no saved app with the id {args.id!r}")
            write_apps_file(folder, kept)
            print(f"app {args.id} removed", file=stdout)
        elif args.action == "list":
            for entry in entries:
                print(f"{entry['id']}\t{entry['app']}\t{entry.get('venv') or '-'}", file=stdout)
    except (SpecError, VenvError) as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    return 0


def _create_venv(args, folder, out):
    """``<instance>/local/venvs/<name>`` with fal's SDK and the app's ``requirements``."""
    probe = make_spec(args.app, args.id, "-")
    if probe.native:
        raise SpecError(f"app {args.app!r} is a native falweb.apps app: it runs in falweb's "
                        "own interpreter and needs no virtualenv")
    venv = os.path.join(folder, "local", "venvs", probe.id.replace("/", "--"))
    requirements = declared_requirements(probe.file, probe.class_name)
    return create_venv(venv, requirements, out=out)


def add_parser(sub):
    apps = sub.add_parser(
        "apps", help="manage the apps the local runtime hosts (your own model APIs)",
        description="Your own fal apps (or falweb.apps apps), served by the local runtime "
                    "with fal's protocol. Saved in the instance folder's local/apps.json.")
    actions = apps.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="host an app: FILE::Class, as fal run names it")
    add.add_argument("app", metavar="FILE::Class")
    add.add_argument("--id", help="its endpoint id, owner/app (default: local/<app-name>)")
    add.add_argument("--venv", help="the virtualenv it runs in (default: FALWEB_APPS_VENV "
                                    "for fal apps, falweb's own for native apps)")
    add.add_argument("--create-venv", action="store_true",
                     help="make it a virtualenv in the instance folder with fal's SDK and "
                          "the app's own requirements (needs the package index)")
    remove = actions.add_parser("remove", help="stop hosting an app")
    remove.add_argument("id", help="the app's endpoint id")
    actions.add_parser("list", help="list the saved apps")
    apps.set_defaults(func=lambda args: main(args))
