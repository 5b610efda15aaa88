"""The endpoint-document catalog: shipped documents, instance/openapi/, registered sources,
and fal's published documents fetched, cached with a TTL and used offline with a note."""

import json
import os
import threading

import pytest
from flask import Flask
from flask import jsonify
from flask import request

from falweb import create_app
from falweb.openapi import find_document
from falweb.openapi import get_document
from falweb.openapi import known_endpoint_ids
from falweb.openapi import register_document
from falweb.openapi import register_source
from falweb.openapi.documents import BUILTIN
from falweb.openapi.remote import FalDocuments
from falweb.schemas import get_endpoint
from falweb.serving import ServerThread

BUILTIN_IDS = {
    "bria/fibo-edit/restyle", "fal-ai/fast-lcm-diffusion", "fal-ai/fast-sdxl", "fal-ai/flux-lora",
    "fal-ai/flux/dev", "fal-ai/flux/schnell", "fal-ai/kling-video/v1/standard/text-to-video",
    "fal-ai/lora", "fal-ai/realistic-vision", "openrouter/router",
}
REFERENCE = "/work/shared/reference/fal-openapi"


def tiny_document(endpoint_id, output=None):
    """A minimal hand-written queue document for ``endpoint_id``."""
    return {
        "openapi": "3.0.4",
        "info": {"title": f"Queue OpenAPI for {endpoint_id}", "version": "1.0.0",
                 "x-fal-metadata": {"endpointId": endpoint_id, "category": "text-to-audio"}},
        "components": {"schemas": {
            "Input": {"type": "object", "properties": {
                "text": {"type": "string", "examples": ["hello"]},
                "speed": {"type": "number", "minimum": 0.5, "maximum": 2, "default": 1}},
                "required": ["text"], "x-fal-order-properties": ["text", "speed"]},
            "Output": output or {"type": "object", "properties": {
                "audio": {"allOf": [{"$ref": "#/components/schemas/File"}]}},
                "required": ["audio"]},
            "File": {"type": "object", "properties": {
                "url": {"type": "string"}, "content_type": {"type": "string"}},
                "required": ["url"]},
        }},
        "paths": {
            f"/{endpoint_id}": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Input"}}}}}},
            f"/{endpoint_id}/requests/{{request_id}}": {"get": {"responses": {"200": {
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Output"}}}}}}},
        },
    }


def test_the_ten_shipped_documents_are_the_reference_files_unmodified():
    assert set(BUILTIN.endpoint_ids()) == BUILTIN_IDS
    if not os.path.isdir(REFERENCE):
        pytest.skip("reference documents not available")
    package = os.path.join(os.path.dirname(__file__), "..", "falweb", "openapi", "builtin")
    for name in os.listdir(REFERENCE):
        if name.endswith(".json"):
            with open(os.path.join(REFERENCE, name), "rb") as a, \
                    open(os.path.join(package, name), "rb") as b:
                assert a.read() == b.read(), name


def test_a_document_dropped_into_the_instance_folder_is_an_endpoint(tmp_path):
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path),
                      "FALWEB_BACKEND": "local", "FALWEB_LOCAL_URL": "http://127.0.0.1:9"})
    folder = os.path.join(app.instance_path, "openapi")
    assert get_endpoint("acme/drop-in") is None
    with open(os.path.join(folder, "drop.json"), "w") as f:
        json.dump(tiny_document("acme/drop-in"), f)
    endpoint = get_endpoint("acme/drop-in")
    assert endpoint is not None and endpoint.category == "text-to-audio"
    assert list(endpoint.input_schema().fields) == ["text", "speed"]
    assert "acme/drop-in" in known_endpoint_ids()
    # A broken file next to it is skipped, not fatal.
    with open(os.path.join(folder, "broken.json"), "w") as f:
        f.write("{not json")
    assert get_endpoint("acme/drop-in") is endpoint


def test_register_source_and_register_document_add_and_remove_entries():
    class OwnApps:
        def document(self, endpoint_id):
            return tiny_document(endpoint_id) if endpoint_id == "own/app" else None

        def endpoint_ids(self):
            return ["own/app"]

    remove = register_source(OwnApps())
    try:
        assert get_document("own/app")["info"]["x-fal-metadata"]["endpointId"] == "own/app"
        assert "own/app" in known_endpoint_ids()
        assert get_endpoint("own/app").input_schema().load({"text": "hi"}) == {
            "text": "hi", "speed": 1}
    finally:
        remove()
    assert get_document("own/app") is None
    remove = register_document(tiny_document("whatever/name"), endpoint_id="own/served")
    try:
        assert get_endpoint("own/served").endpoint_id == "own/served"
    finally:
        remove()
    assert get_endpoint("own/served") is None


class FakeFal:
    """fal.ai's document route on a loopback port: the one thing these tests mock."""

    def __init__(self):
        self.calls = []
        self.down = False
        self.lock = threading.Lock()
        app = Flask("fake-fal")

        @app.get("/api/openapi/queue/openapi.json")
        def openapi():
            endpoint_id = request.args.get("endpoint_id", "")
            with self.lock:
                self.calls.append(endpoint_id)
            if self.down:
                return "unavailable", 503
            if endpoint_id.startswith("fal-ai/unknown"):
                return jsonify({"detail": "not found"}), 404
            return jsonify(tiny_document(endpoint_id))

        self.server = ServerThread(app, "127.0.0.1")
        self.url = self.server.url + "/api/openapi/queue/openapi.json"


@pytest.fixture
def fake_fal():
    fal = FakeFal()
    yield fal
    fal.server.shutdown()


def test_fal_documents_are_fetched_once_cached_and_refreshed_after_the_ttl(tmp_path, fake_fal):
    source = FalDocuments(str(tmp_path), ttl=3600, url=fake_fal.url)
    assert source.document("fal-ai/new-model")["info"]["x-fal-metadata"]["endpointId"] == \
        "fal-ai/new-model"
    # Read from the cache: the same object each time (the endpoint is built once).
    assert source.document("fal-ai/new-model") is source.document("fal-ai/new-model")
    assert fake_fal.calls == ["fal-ai/new-model"]
    assert os.path.exists(tmp_path / "fal-ai__new-model.json")
    # A fresh source on the same folder (another worker, a restart) reads the cache.
    again = FalDocuments(str(tmp_path), ttl=3600, url=fake_fal.url)
    assert again.document("fal-ai/new-model") is not None and len(fake_fal.calls) == 1
    assert again.endpoint_ids() == ["fal-ai/new-model"]
    expired = FalDocuments(str(tmp_path), ttl=0, url=fake_fal.url)
    assert expired.document("fal-ai/new-model") is not None and len(fake_fal.calls) == 2
    assert expired.note("fal-ai/new-model") is None
    # fal has no such endpoint: None, nothing cached; an id that is no id is never sent.
    assert source.document("fal-ai/unknown-thing") is None
    assert source.document("../../etc/passwd") is None
    assert fake_fal.calls[-1] == "fal-ai/unknown-thing"


def test_offline_falls_back_to_the_cache_with_a_visible_note(tmp_path, fake_fal):
    FalDocuments(str(tmp_path), url=fake_fal.url).document("fal-ai/cached-one")
    fake_fal.down = True
    offline = FalDocuments(str(tmp_path), ttl=0, url=fake_fal.url, retry_after=3600)
    assert offline.document("fal-ai/cached-one") is not None
    assert "could not be reached (HTTP 503)" in offline.note("fal-ai/cached-one")
    calls = len(fake_fal.calls)
    # Not asked again at every lookup while it is down.
    assert offline.document("fal-ai/cached-one") is not None
    assert len(fake_fal.calls) == calls
    assert offline.document("fal-ai/never-cached") is None


def test_with_the_fal_backend_an_unseen_endpoint_id_opens_its_form(tmp_path, fake_fal):
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path),
                      "FAL_KEY": "id:secret", "FALWEB_BACKEND": "fal",
                      "FALWEB_OPENAPI_URL": fake_fal.url, "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    page = client.get("/models/acme/seen-nowhere")
    assert page.status_code == 200, page.text
    assert 'name="text"' in page.text and 'name="speed"' in page.text
    with app.app_context():
        assert find_document("acme/seen-nowhere")[1] == "fal"
        assert get_endpoint("acme/seen-nowhere") is get_endpoint("acme/seen-nowhere")
    assert client.get("/models/fal-ai/unknown-x").status_code == 404
    fake_fal.down = True
    with app.app_context():
        app.extensions["fal_openapi"].ttl = 0
    page = client.get("/models/acme/seen-nowhere")
    assert page.status_code == 200
    assert "could not be reached" in page.text
