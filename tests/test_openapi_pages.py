"""The pages for an endpoint known only by a document written here: every kind of field a
form can take (file lists, a nested object, rows of objects, free JSON), posted without
JavaScript, and the output shown by its type."""

import io
import json

import pytest
from PIL import Image

from tests.test_pages import field_html
from tests.test_pages import request_id_of
from tests.test_pages import wait_done

ENDPOINT = "acme/kitchen-sink"

DOCUMENT = {
    "openapi": "3.0.4",
    "info": {"title": f"Queue OpenAPI for {ENDPOINT}", "version": "1",
             "x-fal-metadata": {"endpointId": ENDPOINT, "category": "audio-to-text"}},
    "components": {"schemas": {
        "KitchenInput": {"type": "object", "required": ["prompt", "options"],
                         "x-fal-order-properties": ["prompt", "image_urls", "voice_url",
                                                    "options", "tags", "extra", "mood"],
                         "properties": {
            "prompt": {"type": "string", "examples": ["a kitchen at dawn"]},
            "image_urls": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "voice_url": {"type": "string"},
            "options": {"allOf": [{"$ref": "#/components/schemas/Options"}]},
            "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"},
                     "default": []},
            "extra": {"type": "object", "additionalProperties": True},
            "mood": {"anyOf": [{"enum": ["calm", "loud"], "type": "string"},
                               {"type": "null"}]},
        }},
        "Options": {"type": "object", "required": ["level"], "properties": {
            "level": {"type": "integer", "minimum": 1, "maximum": 5},
            "speed": {"type": "number", "exclusiveMinimum": 0, "default": 1.0}}},
        "Tag": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1},
            "weight": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}}},
        "KitchenOutput": {"type": "object", "required": ["audio", "transcript"], "properties": {
            "audio": {"allOf": [{"$ref": "#/components/schemas/File"}]},
            "transcript": {"type": "string"},
            "debug": {"allOf": [{"$ref": "#/components/schemas/File"}]}}},
        "File": {"type": "object", "required": ["url"], "properties": {
            "url": {"type": "string"}, "content_type": {"type": "string"}}},
    }},
    "paths": {
        f"/{ENDPOINT}": {"post": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/KitchenInput"}}}}}},
        f"/{ENDPOINT}/requests/{{request_id}}": {"get": {"responses": {"200": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/KitchenOutput"}}}}}}},
    },
}


@pytest.fixture
def kitchen(app):
    with open(f"{app.instance_path}/openapi/kitchen.json", "w") as f:
        json.dump(DOCUMENT, f)
    return app


def png(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "PNG")
    buffer.seek(0)
    return buffer


def test_the_form_has_a_widget_for_every_kind_of_field(kitchen, client):
    body = client.get(f"/models/{ENDPOINT}").text
    assert 'type="file" name="image_urls_file" multiple accept="image/*"' in \
        field_html(body, "image_urls")
    assert 'type="file" name="voice_url_file" accept=""' in field_html(body, "voice_url")
    options = field_html(body, "options")
    assert 'name="options-0-level"' in options and 'name="options-0-speed"' in options
    assert 'data-remove-row' not in options  # one object: no rows to remove
    assert 'name="tags-0-name"' in field_html(body, "tags")
    assert '<textarea id="input-extra" name="extra"' in field_html(body, "extra")
    assert '<option value="calm"' in field_html(body, "mood")
    # Required first, the optional rest folded under "Advanced".
    assert body.index('id="field-options"') < body.index('<details class="advanced"') < \
        body.index('id="field-tags"')


def test_a_post_without_javascript_uploads_folds_and_completes(kitchen, client, live_server):
    response = client.post(f"/models/{ENDPOINT}", content_type="multipart/form-data", data={
        "prompt": "onions frying",
        "image_urls_file": [(png("red"), "a.png"), (png("blue"), "b.png")],
        "voice_url_file": [(io.BytesIO(b"RIFF....WAVEfmt "), "voice.wav", "audio/wav")],
        "options-0-level": "3", "options-0-speed": "",
        "tags-0-name": "warm", "tags-0-weight": "0.25", "tags-1-name": "", "tags-1-weight": "",
        "extra": '{"chef": {"name": "Ada"}}', "mood": "calm"})
    request_id = request_id_of(response)
    row = wait_done(client, request_id)
    page = client.get(f"/requests/{request_id}").text
    input_json = page.split('id="input-json">', 1)[1].split("</pre>", 1)[0]
    assert "/local/cdn/files/" in input_json
    assert "&#34;options&#34;: {\n    &#34;level&#34;: 3,\n    &#34;speed&#34;: 1.0" in input_json
    assert "&#34;tags&#34;: [\n    {\n      &#34;name&#34;: &#34;warm&#34;" in input_json
    assert "&#34;chef&#34;" in input_json
    # The output by its type: an audio player, the transcript as text; no debug file.
    assert '<audio controls preload="metadata" src="/local/cdn/files/' in page
    assert 'class="text-output">[SYNTHETIC PREVIEW' in page
    assert "debug" not in page.split('class="result"', 1)[1].split("Output JSON", 1)[0]
    assert row is not None


def test_bad_values_come_back_beside_their_fields(kitchen, client):
    response = client.post(f"/models/{ENDPOINT}", data={
        "prompt": "x", "options-0-level": "9", "tags-0-weight": "2", "extra": "{not json",
        "mood": "sad"})
    assert response.status_code == 422
    body = response.text
    assert "Must be greater than or equal to 1 and less than or equal to 5." in \
        field_html(body, "options")
    tags = field_html(body, "tags")
    assert "Missing data" in tags or "This field is required." in tags
    assert "less than or equal to 1" in tags
    assert "Not a valid mapping type." in field_html(body, "extra")
    assert "Must be one of: calm, loud." in field_html(body, "mood")
