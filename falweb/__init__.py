"""falweb: a self-hosted Flask app and toolkit for fal-style model APIs."""

import logging
import os
import secrets
import sys
from importlib import metadata

from falweb import config as settings

try:
    # One version: pyproject.toml's, as the installed package records it.
    __version__ = metadata.version("falweb")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_HERE = os.path.dirname(os.path.abspath(__file__))


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is now (pytest and gunicorn swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _configure_logging(level):
    # Logging before the app exists, as Flask's logging docs advise; stdout suits containers.
    logger = logging.getLogger("falweb")
    if not logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


def _secret_key(instance_path):
    # One random key kept on disk, so every gunicorn worker signs sessions the same way.
    from falweb.instance_files import read_or_create

    path = os.path.join(instance_path, "secret_key")
    try:
        return read_or_create(path, lambda: secrets.token_hex(32).encode()).decode().strip()
    except OSError:
        return secrets.token_hex(32)


def create_app(test_config=None):
    """Create the falweb app: config, logging, extensions, blueprints, local runtime.

    Config layers, lowest first: :data:`falweb.config.DEFAULTS`, ``instance/config.py``,
    ``FALWEB_*`` / ``FAL_KEY*`` environment, ``test_config``.
    """
    # Flask is imported here, not at the top: `import falweb.client` (no Flask in it) pays
    # for the package's __init__ too, and Flask was half of that import's time.
    from flask import Flask

    from falweb.proxy import DEFAULTS as PROXY_DEFAULTS

    test_config = dict(test_config or {})
    env = settings.from_environ(defaults=PROXY_DEFAULTS)
    instance_path = (
        test_config.get("FALWEB_INSTANCE_PATH") or env.get("FALWEB_INSTANCE_PATH") or None
    )
    app = Flask(
        __name__,
        instance_path=os.path.abspath(instance_path) if instance_path else None,
        instance_relative_config=True,
        template_folder=os.path.join(_HERE, "..", "templates"),
        static_folder=os.path.join(_HERE, "..", "static"),
    )
    app.config.from_mapping(settings.DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.update(env)
    app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["FALWEB_INSTANCE_PATH"] = app.instance_path
    app.config["FALWEB_BACKEND"] = settings.backend_of(app.config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = app.config["FALWEB_SECRET_KEY"] or _secret_key(app.instance_path)
    _configure_logging(app.config["FALWEB_LOG_LEVEL"])

    from falweb import auth
    from falweb import backend
    from falweb import downloads
    from falweb import health
    from falweb import history
    from falweb import history_sync
    from falweb import limits
    from falweb import live
    from falweb import open_endpoint
    from falweb import pages
    from falweb import playground
    from falweb import security_headers
    from falweb import webhooks
    from falweb.openapi import catalog as openapi_catalog
    from falweb.proxy import FalProxy
    from falweb.proxy_access import init_proxy_access

    auth.init_app(app)
    limits.init_app(app)
    backend.init_app(app)
    openapi_catalog.init_app(app)
    app.register_blueprint(health.bp)
    history.init_app(app)
    history_sync.init_app(app)
    # The proxy forwards to this app's backend: fal, or the local runtime.
    proxy = FalProxy(app, hosts=backend.hosts, mounts=lambda: backend.mounts(app))
    init_proxy_access(proxy)
    for part in (pages, downloads, webhooks, live, open_endpoint, playground):
        part.init_app(app)
    security_headers.init_app(app)
    return app
