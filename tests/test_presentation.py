"""What the pages show of values: image sizes as people name them; the app's own 404 page."""

import pytest

from falweb import presentation


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("square_hd", "Square HD"),
        ("square", "Square"),
        ("portrait_4_3", "Portrait 4:3"),
        ("portrait_16_9", "Portrait 16:9"),
        ("landscape_4_3", "Landscape 4:3"),
        ("landscape_16_9", "Landscape 16:9"),
        ("custom", "Custom"),
        ({"height": 1024, "width": 768}, "768 × 1024"),
    ],
)
def test_size_label_reads_like_a_person_wrote_it(value, label):
    assert presentation.size_label(value) == label


def test_size_label_can_add_the_preset_pixels():
    assert presentation.size_label("portrait_4_3", pixels=True) == "Portrait 4:3 (768 × 1024)"
    assert presentation.size_label("custom", pixels=True) == "Custom"


@pytest.mark.parametrize("endpoint_id", ["fal-ai/fast-sdxl", "fal-ai/realistic-vision"])
def test_form_shows_size_presets_by_name_and_no_raw_json(client, endpoint_id):
    page = client.get(f"/models/{endpoint_id}").text
    assert ">Portrait 4:3 (768 × 1024)</option>" in page
    assert ">Square HD (1024 × 1024)</option>" in page
    assert "portrait 4 3" not in page and "square hd" not in page
    assert '{"height"' not in page and "{&#34;height" not in page


def test_a_dict_default_size_reads_width_by_height(client):
    # fal's document: {"height": 1024, "width": 1024} (the seed page printed [object Object]).
    page = client.get("/models/fal-ai/realistic-vision").text
    assert "Default: 1024 × 1024" in page


@pytest.mark.parametrize("path", ["/nope", "/live/fal-ai/fast-sdxl", "/models/fal-ai/nope"])
def test_unknown_pages_get_the_styled_404(client, path):
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert '<header class="topbar">' in response.text and "<h1>Not found</h1>" in response.text


def test_json_routes_keep_their_own_404(client):
    proxy = client.post("/api/fal/proxy", headers={"x-fal-target-url": "https://example.com/x"})
    assert proxy.mimetype == "application/json"
    # Below the JSON blueprints' prefixes an unknown address is no page of the app's.
    for path in ("/webhooks/nope", "/api/fal/proxy/nope"):
        response = client.get(path, headers={"Accept": "text/html"})
        assert response.status_code in (404, 405)
        assert '<header class="topbar">' not in response.text


def test_favicon_is_served(client):
    page = client.get("/").text
    assert 'rel="icon" href="/static/favicon.svg"' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    icon.close()
    legacy = client.get("/favicon.ico", follow_redirects=True)
    assert legacy.status_code == 200 and legacy.mimetype == "image/svg+xml"
    legacy.close()
