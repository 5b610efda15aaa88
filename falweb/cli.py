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

    config = settings.DEFAULTS | settings.from_environ()
    if args.workers is not None:
        config["FALWEB_LOCAL_WORKERS"] = args.workers
    if args.workers_only:
        import os

        from falweb.local.workers import run_workers

        config["FALWEB_INSTANCE_PATH"] = config["FALWEB_INSTANCE_PATH"] or os.path.join(
            os.getcwd(), "instance")
        run_workers(config, banner=lambda line: print(line, flush=True))
        return

    def make(url):
        return create_local_app(config)

    _listen(make, args.host, args.port, lambda app, url: f"falweb local runtime on {url}/")


def _generate(args):
    from falweb.generate import main as generate

    return generate(args)


# argparse shows these as written (RawDescriptionHelpFormatter), so they are plain text: the
# module docstrings' ``markup`` would reach the terminal as it is.
DESCRIPTION = """\
Generate images with fal's model APIs: run the web app, run the fal-compatible local runtime
alone, or make one request from the command line. With no fal key everything runs offline on
the local runtime."""

EPILOG = """\
examples:
  falweb serve                                    the app on http://127.0.0.1:5000
  falweb serve --host 0.0.0.0 --port 8000         reachable from other machines
  falweb local --port 8100                        only the local runtime, for fal's clients
  falweb local --workers-only --workers 2         only run jobs from the shared queue
  falweb generate fal-ai/fast-sdxl --prompt "a lighthouse at dusk"
  falweb generate openrouter/router --input prompt="a haiku" --input model=google/gemini-2.5-flash
  falweb schema fal-ai/kling-video/v1/standard/text-to-video

'falweb COMMAND --help' tells more about each command."""

GENERATE_DESCRIPTION = """\
Submit one request to any model endpoint, show its progress (queue position, then steps and
log lines) on stderr, save the files it returns (images, video, audio) and print where they
are, and print its text outputs. 'falweb schema ENDPOINT_ID' lists the fields it takes.

Backend: fal when FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) is set; otherwise the local
runtime that 'falweb serve' embeds, at FALWEB_LOCAL_URL (default
http://127.0.0.1:5000/local, so start 'falweb serve' first). Setting FALWEB_LOCAL_URL, or
FALWEB_BACKEND=local, picks the local runtime even when a key is set."""

GENERATE_EPILOG = """\
--param KEY=VALUE sets one more input field; repeat it for each. VALUE is read as JSON when
it parses (numbers, true/false, lists, objects) and kept as a string otherwise, so
num_images=2 is a number and format=png a string; write '"42"' to send 42 as a string.

stdout gets one labelled line each for the request_id, the seed (pass it back with
--param seed=... to get the same image), every saved file ("saved: PATH") and every text
output ("output: ...").

examples:
  falweb generate fal-ai/fast-sdxl --prompt "a lighthouse at dusk"
  falweb generate fal-ai/fast-sdxl --prompt "a cat in a hat" --param num_images=2 \\
      --param 'image_size={"width": 768, "height": 512}' --out images
  falweb generate fal-ai/flux/dev --prompt "a red fox" --param seed=42 \\
      --param num_inference_steps=28 --param image_size=landscape_4_3"""


def build_parser():
    parser = argparse.ArgumentParser(prog="falweb", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web app (threaded dev server)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.set_defaults(func=_serve)

    local = sub.add_parser("local", help="run the fal-compatible local runtime alone")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=8100)
    local.add_argument("--workers-only", action="store_true",
                       help="serve nothing: only run jobs from the shared queue "
                            "(FALWEB_DATABASE_URL), e.g. on each GPU box")
    local.add_argument("--workers", type=int, default=None, metavar="N",
                       help="job threads (default: FALWEB_LOCAL_WORKERS)")
    local.set_defaults(func=_local)

    generate = sub.add_parser(
        "generate", help="generate images from the command line",
        description=GENERATE_DESCRIPTION, epilog=GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument("endpoint_id", help="the model endpoint, e.g. fal-ai/fast-sdxl")
    generate.add_argument("--prompt", help="what to generate (the input's prompt field)")
    generate.add_argument(
        "--param", "--input", dest="param", action="append", default=[], metavar="KEY=VALUE",
        help="an input field; VALUE is parsed as JSON when it can be (repeat for each)",
    )
    generate.add_argument("--out", default=".",
                          help="folder for the downloaded images (default: the current one)")
    generate.set_defaults(func=_generate)

    from falweb.schema_cli import add_parser as add_schema_parser
    from falweb.users_cli import add_parser as add_users_parser

    add_schema_parser(sub)
    add_users_parser(sub)
    from falweb.apps_cli import add_parser as add_apps_parser

    add_apps_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
