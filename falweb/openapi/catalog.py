"""The app's endpoint documents: ``instance/openapi/`` always, fal's published ones with the
fal backend (:mod:`falweb.openapi.remote`)."""

import os

from falweb.openapi import remote
from falweb.openapi.documents import add_directory


def init_app(app):
    """Serve ``<instance>/openapi/*.json`` and, with the fal backend, fal's documents."""
    folder = os.path.join(app.instance_path, "openapi")
    os.makedirs(folder, exist_ok=True)
    add_directory(folder)
    remote.init_app(app)
    # Pages show why a document may be out of date (fal unreachable, an older copy in use).
    from falweb.openapi import document_note

    app.jinja_env.globals["openapi_note"] = document_note
