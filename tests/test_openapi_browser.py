"""Each of fal's ten reference documents in headless Chromium: its form (filled by the
"Example" button), a submission on the local runtime, the output shown by its type, and a
screenshot of the form and of the result in ``test-artifacts/``."""

import pytest

from falweb.openapi.documents import BUILTIN
from falweb.testing import serve_app
from tests.test_browser import css
from tests.test_browser import css_all
from tests.test_browser import fill
from tests.test_browser import meets_the_csp  # noqa: F401 - autouse: every page meets the CSP
from tests.test_browser import status_of
from tests.test_browser import wait
from tests.test_browser import wait_for_request_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TEN = sorted(BUILTIN.endpoint_ids())


@pytest.fixture
def server(tmp_path):
    # One app per test: the CSP check after each test counts that app's reports.
    with serve_app({"TESTING": True, "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0,
                    "FALWEB_LOCAL_WORKERS": 2, "FALWEB_INSTANCE_PATH": str(tmp_path)}) as server:
        yield server


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("upload") / "input.png"
    Image.new("RGB", (80, 60), (30, 160, 90)).save(path)
    return path


def slug(endpoint_id):
    return endpoint_id.replace("/", "__")


def media_ready(driver, selector):
    """Every element matching ``selector`` (img, video, audio) has loaded enough to show."""
    elements = css_all(driver, selector)
    return elements and all(driver.execute_script(
        "var e = arguments[0]; return e.tagName === 'IMG' ? e.complete && e.naturalWidth > 0"
        " : e.readyState >= 1 && e.duration > 0;", element) for element in elements)


@pytest.mark.parametrize("endpoint_id", TEN)
def test_form_submission_and_output_of_each_document(browser, server, picture, endpoint_id):
    driver = browser.driver
    driver.get(f"{server.url}/models/{endpoint_id}")
    css(driver, ".form-actions a.button").click()  # "Example": the document's examples
    wait(driver, lambda d: "example=1" in d.current_url, message="the example form")
    browser.screenshot(f"openapi-form-{slug(endpoint_id)}")
    # Required fields first, the rest folded under "Advanced".
    assert css_all(driver, ".form-main .field")
    for file_input in css_all(driver, 'input[type=file][name$="_file"]'):
        if file_input.get_attribute("accept") == "image/*" and \
                "advanced" not in driver.execute_script(
                    "return arguments[0].closest('details') ? 'advanced' : ''", file_input):
            # fal's example URL is on a CDN this sandbox cannot reach: upload a file instead.
            name = file_input.get_attribute("name")[: -len("_file")]
            fill(css(driver, f"#input-{name}"), "")
            file_input.send_keys(str(picture))
            # The chosen image shows at once, before anything is sent.
            wait(driver, lambda d, name=name: (css(d, f'[data-preview-for="{name}"]')
                                               .get_attribute("src") or "").startswith("blob:"),
                 message="the chosen image's preview")
    if css_all(driver, "#input-image_size"):
        driver.execute_script("document.getElementById('input-image_size').value = 'square'")
    css(driver, "#model-form button[type=submit]").click()
    wait_for_request_page(driver)
    wait(driver, lambda d: status_of(d) in ("COMPLETED", "FAILED"), timeout=60, message="done")
    assert status_of(driver) == "COMPLETED", css(driver, "section.status").text
    if endpoint_id.startswith("fal-ai/kling-video"):
        wait(driver, lambda d: media_ready(d, ".media--video video"), message="video loaded")
        browser.screenshot(f"openapi-result-{slug(endpoint_id)}")
        # The history shows the video's first frame as its thumbnail.
        driver.get(server.url + "/history")
        wait(driver, lambda d: media_ready(d, ".thumb video"), message="a video thumbnail")
        browser.screenshot("openapi-history-video")
        return
    elif endpoint_id == "openrouter/router":
        assert "SYNTHETIC PREVIEW" in css(driver, ".media--text .text-output").text
    elif endpoint_id.startswith("bria/"):
        wait(driver, lambda d: media_ready(d, ".media--image img"), message="image loaded")
    else:
        wait(driver, lambda d: media_ready(d, ".images img"), message="images loaded")
        if endpoint_id == "fal-ai/flux/dev":
            # A click opens the lightbox (no script: a :target overlay), a click closes it.
            css(driver, ".images .image__frame").click()
            lightbox = css(driver, ".lightbox")
            wait(driver, lambda d: lightbox.is_displayed(), message="the lightbox")
            browser.screenshot("openapi-lightbox")
            lightbox.click()
            wait(driver, lambda d: not lightbox.is_displayed(), message="the lightbox closed")
    assert css_all(driver, ".badge--synthetic")
    browser.screenshot(f"openapi-result-{slug(endpoint_id)}")


def test_the_endpoint_id_box_opens_any_documented_endpoint(browser, server):
    driver = browser.driver
    driver.get(server.url + "/")
    assert css_all(driver, '#documented-endpoints a[href="/models/openrouter/router"]')
    fill(css(driver, "#endpoint-id"), "fal-ai/flux/schnell")
    css(driver, ".endpoint-box button").click()
    wait(driver, lambda d: d.current_url.endswith("/models/fal-ai/flux/schnell"),
         message="the form")
    # A bounded number has a slider beside its box; moving one moves the other.
    driver.execute_script("document.querySelector('details.advanced').open = true")
    slider = css(driver, '[data-slider-for="input-num_inference_steps"]')
    driver.execute_script("arguments[0].value = 9; arguments[0].dispatchEvent("
                          "new Event('input', {bubbles: true}))", slider)
    assert css(driver, "#input-num_inference_steps").get_attribute("value") == "9"

