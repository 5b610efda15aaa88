"""The ``falweb`` command: ``serve`` the app, run a ``local`` runtime alone, ``generate``."""

import argparse
import sys


def _serve(args):
    from werkzeug.serving import run_simple

    from falweb import create_app

    url = f"http://{args.host}:{args.port}"
    app = create_app({"FALWEB_SELF_URL": url} if args.host not in ("0.0.0.0", "::") else None)
    from falweb import backend

    info = backend.describe(app)
    print(f"falweb serving on {url}/  (backend: {info['backend']})", flush=True)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


def _local(args):
    from werkzeug.serving import run_simple

    from falweb import config as settings
    from falweb.local import create_local_app

    app = create_local_app(settings.DEFAULTS | settings.from_environ())
    print(f"falweb local runtime on http://{args.host}:{args.port}/", flush=True)
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False)


def _generate(args):
    from falweb.generate import main as generate

    return generate(args)


def build_parser():
    parser = argparse.ArgumentParser(prog="falweb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app (threaded dev server)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.set_defaults(func=_serve)

    local = sub.add_parser("local", help="run the fal-compatible local runtime alone")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=8100)
    local.set_defaults(func=_local)

    generate = sub.add_parser("generate", help="generate images from the command line")
    generate.add_argument("endpoint_id")
    generate.add_argument("--prompt", required=True)
    generate.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="another input field; VALUE is parsed as JSON when it can be",
    )
    generate.add_argument("--out", default=".", help="folder for the downloaded images")
    generate.set_defaults(func=_generate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
