"""``falweb users``: add, remove and list the people who may log in, and make API tokens.

The store is ``users.sqlite`` in the instance folder the app uses (``FALWEB_INSTANCE_PATH``,
else Flask's ``instance`` folder), so run it where the app runs.
"""

import getpass
import os
import sys
import time

from falweb.users import UserError
from falweb.users import Users


def instance_path(environ=None):
    """The instance folder :func:`falweb.create_app` would use."""
    environ = os.environ if environ is None else environ
    if environ.get("FALWEB_INSTANCE_PATH"):
        return os.path.abspath(environ["FALWEB_INSTANCE_PATH"])
    from flask import Flask

    return Flask("falweb").instance_path


def _store():
    path = instance_path()
    os.makedirs(path, exist_ok=True)
    return Users(path)


def _password(args):
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Again: "):
        raise UserError("the two passwords differ")
    return first


def main(args, stdout=None, stderr=None):
    """Run ``falweb users <action>``; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        store = _store()
        if args.action == "add":
            store.add(args.name, _password(args), admin=args.admin)
            print(f"user {args.name} saved{' (admin)' if args.admin else ''}", file=stdout)
        elif args.action == "remove":
            if not store.remove(args.name):
                raise UserError(f"no user named {args.name!r}")
            print(f"user {args.name} removed", file=stdout)
        elif args.action == "list":
            for user in store.list():
                created = time.strftime("%Y-%m-%d", time.gmtime(user["created"]))
                role = "admin" if user["admin"] else "user"
                print(f"{user['name']}\t{role}\t{user['tokens']} token(s)\tsince {created}",
                      file=stdout)
        elif args.action == "token":
            # The token alone on stdout, so that scripts can take it.
            print(store.create_token(args.name, args.label or ""), file=stdout)
    except UserError as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    return 0


def add_parser(sub):
    users = sub.add_parser(
        "users", help="manage who may log in (password access mode)",
        description="Manage the users of the password access mode, in the instance folder's "
                    "users.sqlite (FALWEB_INSTANCE_PATH). Once a user exists, the app asks "
                    "everyone to log in.")
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user, or set their password")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true",
                     help="may see and manage everyone's requests")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking")
    remove = actions.add_parser("remove", help="remove a user and their tokens")
    remove.add_argument("name")
    actions.add_parser("list", help="list the users")
    token = actions.add_parser("token", help="make an API token for a user (printed once)")
    token.add_argument("name")
    token.add_argument("--label", help="what will use the token")
    users.set_defaults(func=lambda args: main(args))
