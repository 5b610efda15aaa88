"""The app's endpoint documents: ``instance/openapi/`` always, fal's published ones with the
fal backend (:mod:`falweb.openapi.remote`), and the apps the local runtime hosts
(:mod:`falweb.openapi.hosted`)."""

import os
import weakref

import requests

from falweb import backend
from falweb.openapi import remote
from falweb.openapi.documents import add_directory
from falweb.openapi.documents import register_source
from falweb.openapi.hosted import HostedAppDocuments

# Seconds to wait for a runtime elsewhere to list its apps' documents (a page waits too).
HOSTED_TIMEOUT = 2


def init_app(app):
    """Serve ``<instance>/openapi/*.json``, the hosted apps' documents and, with the fal
    backend, fal's documents."""
    folder = os.path.join(app.instance_path, "openapi")
    os.makedirs(folder, exist_ok=True)
    add_directory(folder)
    remote.init_app(app)
    fetch = _hosted_documents(app)
    if fetch is not None:
        register_source(HostedAppDocuments(fetch))
    # Pages show why a document may be out of date (fal unreachable, an older copy in use).
    from falweb.openapi import document_note

    app.jinja_env.globals["openapi_note"] = document_note


def _hosted_documents(app):
    """A function returning ``{app_id: document}`` of the runtime's hosted apps, or None."""
    runtime = backend.embedded_runtime(app)
    if runtime is not None:
        if getattr(runtime, "apps", None) is None:
            return None  # no app is configured: nothing to ask, ever
        # Weakly: the catalog is per process, an app (and its runtime) may be gone.
        ref = weakref.ref(runtime)

        def embedded():
            found = ref()
            return found.apps.openapi_documents() if found is not None else {}

        return embedded
    if app.config["FALWEB_BACKEND"] == "local" and app.config["FALWEB_LOCAL_URL"]:
        base = app.config["FALWEB_LOCAL_URL"].rstrip("/")
        return lambda: _documents_over_http(base)
    return None


def _documents_over_http(base):
    """The documents of a runtime elsewhere (``GET /apps``, then each app's document)."""
    with requests.Session() as session:
        listed = session.get(f"{base}/apps", timeout=HOSTED_TIMEOUT)
        if listed.status_code != 200:
            return {}
        documents = {}
        for entry in listed.json().get("apps") or []:
            if entry.get("state") != "healthy":
                continue
            answer = session.get(f"{base}/apps/{entry['id']}/openapi.json",
                                 timeout=HOSTED_TIMEOUT)
            if answer.status_code == 200:
                documents[entry["id"]] = answer.json()
        return documents
