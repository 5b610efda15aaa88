"""Hosted apps on the pages: each app's own OpenAPI document becomes its catalog entry, so
it gets a form, its route's schema and its outputs like any documented endpoint."""

import pytest

from falweb.openapi import find_document
from falweb.openapi import known_endpoint_ids
from falweb.testing import serve_app
from falweb.testing import wait_until
from tests.apps_helpers import EXAMPLES
from tests.apps_helpers import TEST_APPS
from tests.test_pages import field_html
from tests.test_pages import request_id_of
from tests.test_pages import wait_done

pytest.importorskip("pydantic", reason="falweb.apps needs pydantic (the test extra has it)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hosting_app(tmp_path_factory):
    """The web app, its embedded runtime hosting a native app (no fal SDK needed)."""
    apps = [f"{EXAMPLES}/native_text_to_image.py::TextToImage",
            f"{TEST_APPS}/native_apps.py::NativeTools"]
    with serve_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "FALWEB_APPS": apps,
                    "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("web"))}) as server:
        runtime = server.app.extensions["falweb"]["local_app"]
        from falweb.local import runtime_of

        hosted = runtime_of(runtime).apps
        wait_until(lambda: all(a["state"] == "healthy" for a in hosted.state()), timeout=60,
                   message=lambda: f"healthy apps, got {hosted.state()}")
        yield server


def test_each_route_of_a_hosted_app_is_a_catalog_entry(hosting_app):
    with hosting_app.app.app_context():
        ids = known_endpoint_ids()
        document, source = find_document("local/text-to-image")
    assert "local/text-to-image" in ids and source == "HostedAppDocuments"
    assert list(document["paths"]) == ["/"]  # its own route only
    assert document["info"]["x-fal-metadata"]["endpointId"] == "local/text-to-image"


def test_a_hosted_app_gets_a_form_and_its_request_completes(hosting_app):
    client = hosting_app.app.test_client()
    page = client.get("/models/local/text-to-image")
    assert page.status_code == 200, page.text[:300]
    assert 'name="prompt"' in field_html(page.text, "prompt")
    assert 'max="2048"' in field_html(page.text, "width")  # the app's own bound
    response = client.post("/models/local/text-to-image",
                           data={"prompt": "a fox from the form", "width": "64",
                                 "height": "48", "num_inference_steps": "2"})
    request_id = request_id_of(response)
    wait_done(client, request_id, timeout=60)
    result = client.get(f"/requests/{request_id}").text
    assert "COMPLETED" in result and "/local/cdn/files/" in result
    # Bad input is refused by the generated schema, beside its field, before any call.
    refused = client.post("/models/local/text-to-image",
                          data={"prompt": "too wide", "width": "99999"})
    assert refused.status_code == 422 and "2048" in field_html(refused.text, "width")
