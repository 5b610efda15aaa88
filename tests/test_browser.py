"""The whole flow in headless Chromium, with CSRF on, as a person would use it.

catalog → form → bad input shows the errors → good input → status updates → images
shown → re-run → history lists both → cancel a slow job. Screenshots go to ``test-artifacts/``.
"""

import re
import time

import pytest

from falweb.testing import serve_app
from falweb.testing import wait_until
from tests import browser as chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REQUEST_URL = re.compile(r"/requests/(?P<request_id>[0-9a-zA-Z-]+)$")


@pytest.fixture(autouse=True)
def meets_the_csp(request):
    """After each test here (and in the modules that import this fixture): the pages it
    used broke the Content-Security-Policy nowhere, neither in Chromium's console nor in a
    report to the app (see tests/test_browser_csp.py)."""
    servers = [request.getfixturevalue(name) for name in ("server", "slow_server")
               if name in request.fixturenames]
    browsers = [(request.getfixturevalue(name), name == "browser")
                for name in ("browser", "no_js_browser") if name in request.fixturenames]
    yield
    for used in servers:
        for instance, javascript in browsers:
            chromium.assert_meets_csp(instance.driver, used.app, used.url, javascript)


def serve(tmp_path, step_delay):
    return serve_app(
        {
            "TESTING": True,
            "FALWEB_INSTANCE_PATH": str(tmp_path / f"instance-{step_delay}"),
            "FALWEB_BACKEND": "local",
            "FALWEB_LOCAL_STEP_DELAY": step_delay,
            "FALWEB_LOCAL_WORKERS": 2,
            # CSRF stays on: the browser must carry the token in forms and htmx headers.
        }
    )


@pytest.fixture
def server(tmp_path):
    with serve(tmp_path, 0.1) as server:
        yield server


@pytest.fixture
def slow_server(tmp_path):
    with serve(tmp_path, 0.3) as server:
        yield server


def wait(driver, condition, timeout=15, message="condition"):
    from selenium.common.exceptions import NoSuchElementException
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # htmx swaps elements while a condition looks at them: an element found an instant
    # before its swap is stale the next; that is "not yet", so look again.
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException)).until(
        lambda d: condition(d), message=message
    )


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def status_of(driver):
    try:
        return css(driver, "section.status").get_attribute("data-status")
    except Exception:  # noqa: BLE001 - mid-swap the element may be gone for an instant
        return None


def wait_for_request_page(driver, previous=None):
    wait(
        driver,
        lambda d: REQUEST_URL.search(d.current_url)
        and REQUEST_URL.search(d.current_url)["request_id"] != previous,
        message="a new request page",
    )
    return REQUEST_URL.search(driver.current_url)["request_id"]


def wait_images_loaded(driver):
    def loaded(d):
        images = css_all(d, ".images img")
        return images and all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
            for img in images
        )

    wait(driver, loaded, message="images loaded")
    return css_all(driver, ".images img")


def fill(element, text):
    element.clear()
    element.send_keys(text)


def test_generate_flow(browser, server):
    driver = browser.driver

    # catalog
    driver.get(server.url + "/")
    assert "backend: local" in css(driver, ".topbar").text
    assert len(css_all(driver, "#catalog .card")) >= 6
    browser.screenshot("catalog")

    # form
    css(driver, 'a[href="/models/fal-ai/fast-sdxl"]').click()
    wait(driver, lambda d: d.current_url.endswith("/models/fal-ai/fast-sdxl"))
    assert css(driver, "#input-prompt").get_attribute("required") is not None
    browser.screenshot("form")

    # bad input: htmx swaps the 422 form in place, with the messages beside the fields
    fill(css(driver, "#input-num_images"), "99")
    old_form = css(driver, "#model-form")
    css(driver, "#model-form button[type=submit]").click()
    wait(driver, lambda d: css_all(d, "#form-errors"), message="validation errors")
    assert driver.current_url.endswith("/models/fal-ai/fast-sdxl")
    from selenium.common.exceptions import StaleElementReferenceException

    with pytest.raises(StaleElementReferenceException):
        old_form.is_displayed()  # swapped by htmx, not reloaded
    assert "This field is required." in css(driver, "#field-prompt").text
    assert "less than or equal to 8" in css(driver, "#field-num_images").text
    browser.screenshot("form-errors")

    # good input, with an advanced field and a LoRA row
    fill(css(driver, "#input-prompt"), "a lighthouse on a cliff at dusk")
    fill(css(driver, "#input-num_images"), "2")
    css(driver, "details.advanced summary").click()
    fill(css(driver, "#input-num_inference_steps"), "25")
    fill(css(driver, "#input-seed"), "18446744073709551557")  # beyond 2**63 and 2**53
    fill(css(driver, 'input[name="loras-0-path"]'), "https://example.test/style.safetensors")
    # "add row" (app.js) appends a numbered row from the template; "remove" takes it away
    rows = len(css_all(driver, "#rows-loras [data-row]"))
    css(driver, "#rows-loras [data-add-row]").click()
    assert len(css_all(driver, "#rows-loras [data-row]")) == rows + 1
    css_all(driver, "#rows-loras [data-row] [data-remove-row]")[-1].click()
    assert len(css_all(driver, "#rows-loras [data-row]")) == rows
    browser.screenshot("form-advanced")
    css(driver, "#model-form button[type=submit]").click()
    first = wait_for_request_page(driver)

    # status updates: the partial is swapped while it runs, then the results arrive
    seen = set()
    swaps = 0
    section = css(driver, "section.status")

    def completed():
        # Each look also counts swaps (the old section goes stale) and shoots the running page.
        nonlocal swaps, section
        state = status_of(driver)
        seen.add(state)
        try:
            section.get_attribute("id")
        except StaleElementReferenceException:
            swaps += 1
            section = css(driver, "section.status")
        if state == "IN_PROGRESS" and "request-running" not in seen:
            seen.add("request-running")
            browser.screenshot("request-running")
        return state == "COMPLETED"

    wait_until(completed, timeout=30, interval=0.05, message="the request page to show COMPLETED")
    assert status_of(driver) == "COMPLETED"
    assert seen & {"IN_QUEUE", "IN_PROGRESS"}, seen
    assert swaps >= 1
    assert "Preview engine" in css(driver, "details.logs").get_attribute("textContent")

    # images shown, labelled synthetic, with download links; the seed is exact
    images = wait_images_loaded(driver)
    assert len(images) == 2
    assert images[0].get_attribute("loading") == "lazy"
    assert len(css_all(driver, ".images .badge--synthetic")) == 2
    assert css(driver, ".images figcaption a[download]").get_attribute("download").startswith(first)
    assert css(driver, "#result-seed").text == "18446744073709551557"
    assert '"seed": 18446744073709551557' in css(driver, "#input-json").text
    # polling has stopped (286): nothing is swapped any more
    section = css(driver, "section.status")
    time.sleep(1.3)
    assert section.get_attribute("data-status") == "COMPLETED"
    browser.screenshot("request-done")

    # re-run the same input
    css(driver, 'button[name="seed"][value="same"]').click()
    second = wait_for_request_page(driver, previous=first)
    wait(driver, lambda d: status_of(d) == "COMPLETED", timeout=30, message="re-run done")
    wait_images_loaded(driver)
    assert css(driver, "#result-seed").text == "18446744073709551557"

    # history lists both, newest first, with thumbnails
    css(driver, 'a[href="/history"]').click()
    wait(driver, lambda d: d.current_url.endswith("/history"))
    rows = [row.get_attribute("id") for row in css_all(driver, "#history-list .history-row")]
    assert rows[:2] == [f"history-{second}", f"history-{first}"]
    assert len(css_all(driver, "#history-list .thumb img")) == 2
    browser.screenshot("history")


def test_nsfw_image_is_blurred_until_revealed(browser, server):
    driver = browser.driver
    driver.get(server.url + "/models/fal-ai/fast-sdxl")
    fill(css(driver, "#input-prompt"), "nsfw test")
    css(driver, "#model-form button[type=submit]").click()
    wait_for_request_page(driver)
    wait(driver, lambda d: status_of(d) == "COMPLETED", timeout=30, message="done")
    image = wait_images_loaded(driver)[0]
    assert "blur" in image.value_of_css_property("filter")
    css(driver, ".reveal__label").click()
    wait(driver, lambda d: image.value_of_css_property("filter") == "none", message="revealed")


def test_cancel_a_slow_job(browser, slow_server):
    driver = browser.driver
    driver.get(slow_server.url + "/models/fal-ai/fast-sdxl")
    fill(css(driver, "#input-prompt"), "a very slow painting")
    css(driver, "details.advanced summary").click()
    fill(css(driver, "#input-num_inference_steps"), "50")  # fal's document: at most 50
    css(driver, "#model-form button[type=submit]").click()
    request_id = wait_for_request_page(driver)
    wait(driver, lambda d: status_of(d) == "IN_PROGRESS", message="running")
    # The section (and its button) is replaced at every pushed step: a button found an
    # instant before a swap is stale at the click, so click the current one.
    wait(driver, lambda d: css(d, ".status__cancel button").click() or True,
         message="the cancel button clicked")
    wait(driver, lambda d: status_of(d) == "CANCELLED", timeout=20, message="cancelled")
    assert "Cancelled" in css(driver, "#status-label").text
    browser.screenshot("request-cancelled")
    driver.get(slow_server.url + "/history")
    row = css(driver, f"#history-{request_id}")
    assert row.get_attribute("data-status") == "CANCELLED"


def test_image_to_image_uploads_the_chosen_file(browser, server, tmp_path):
    from PIL import Image

    picture = tmp_path / "input.png"
    Image.new("RGB", (96, 64), (20, 120, 220)).save(picture)
    driver = browser.driver
    driver.get(server.url + "/models/fal-ai/fast-sdxl/image-to-image")
    fill(css(driver, "#input-prompt"), "the same, but at night")
    css(driver, 'input[type=file][name="image_url_file"]').send_keys(str(picture))
    css(driver, "#model-form button[type=submit]").click()
    wait_for_request_page(driver)
    wait(driver, lambda d: status_of(d) == "COMPLETED", timeout=30, message="done")
    wait_images_loaded(driver)
    assert f'"image_url": "{server.url}/local/' in css(driver, "#input-json").text


@pytest.fixture
def no_js_browser():
    reason = chromium.missing_reason()
    if reason:
        pytest.skip(reason)
    instance = chromium.Browser(javascript=False)
    yield instance
    instance.quit()


def test_works_without_javascript(no_js_browser, server):
    driver = no_js_browser.driver
    driver.get(server.url + "/models/fal-ai/fast-sdxl")
    # the "add row" and "copy" buttons need scripts, so they are hidden
    assert not css(driver, "[data-add-row]").is_displayed()
    css(driver, "#model-form button[type=submit]").click()
    wait(driver, lambda d: css_all(d, "#form-errors"), message="422 page")
    assert "This field is required." in css(driver, "#field-prompt").text
    fill(css(driver, "#input-prompt"), "a quiet harbour")
    css(driver, "details.advanced summary").click()
    fill(css(driver, "#input-num_inference_steps"), "20")
    css(driver, "#model-form button[type=submit]").click()
    request_id = wait_for_request_page(driver)
    # the page reloads itself (noscript meta refresh) until the request is over
    wait(driver, lambda d: status_of(d) == "COMPLETED", timeout=30, message="refreshed to done")
    wait_images_loaded(driver)
    no_js_browser.screenshot("request-no-js")
    driver.get(server.url + "/history")
    css(driver, f"#history-{request_id} .history-row__delete button").click()
    wait(driver, lambda d: not css_all(d, f"#history-{request_id}"), message="deleted")
