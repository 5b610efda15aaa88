"""The ``falweb`` command: ``serve`` the app, run a ``local`` runtime alone, ``generate``."""

import argparse
import sys


def _listen(app_factory, host, port, banner):
    # Bind first (port 0 picks a free one), then build the app knowing its own URL.
    from werkzeug.serving import make_server

    from falweb.serving import DeferredApp
    from falweb.serving import RedactingRequestHandler

    deferred = DeferredApp()
    server = make_server(host, port, deferred, threaded=True,
                         request_handler=RedactingRequestHandler)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{server.server_port}"
    deferred.app = app_factory(url)
    print(banner(deferred.app, url), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _serve(args):
    from falweb import backend
    from falweb import create_app

    def banner(app, url):
        return f"falweb serving on {url}/  (backend: {backend.describe(app)['backend']})"

    _listen(lambda url: create_app({"FALWEB_SELF_URL": url}), args.host, args.port, banner)


def _local(args):
    from falweb import config as settings
    from falweb.local import create_local_app

    def make(url):
        return create_local_app(settings.DEFAULTS | settings.from_environ())

    _listen(make, args.host, args.port, lambda app, url: f"falweb local runtime on {url}/")


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
