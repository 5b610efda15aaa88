"""The pages meet their own Content-Security-Policy in headless Chromium.

One session walks the main flows — catalog → form (Advanced open, a LoRA row added) →
submit → the request page polling until done → history → live mode typing a prompt and
getting an image — and Chromium neither logs a blocked script, style, image or connection
nor sends a report to ``/csp-report``. A deliberate violation at the end proves the reports
arrive, so zero means zero.
"""

import pytest

from falweb.testing import wait_until
from tests import browser as chromium
from tests.test_browser import css
from tests.test_browser import css_all
from tests.test_browser import fill
from tests.test_browser import server  # noqa: F401 -- the app on a real port, CSRF on
from tests.test_browser import status_of
from tests.test_browser import wait
from tests.test_browser import wait_for_request_page
from tests.test_browser import wait_images_loaded

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_main_flows_meet_the_policy(browser, server):  # noqa: F811
    driver = browser.driver
    driver.get_log("browser")  # forget what earlier tests logged
    counter = server.app.extensions["csp_reports"]

    # The policy is really there, strict, and reporting to the app.
    driver.get(server.url + "/")
    policy = driver.execute_async_script(
        "fetch('/').then(r => arguments[0](r.headers.get('Content-Security-Policy')))")
    assert "script-src 'self';" in policy and "unsafe" not in policy
    assert "report-uri /csp-report" in policy
    assert len(css_all(driver, "#catalog .card")) >= 6

    # form: Advanced open, a LoRA row added and filled
    css(driver, 'a[href="/models/fal-ai/fast-sdxl"]').click()
    wait(driver, lambda d: d.current_url.endswith("/models/fal-ai/fast-sdxl"), message="form")
    fill(css(driver, "#input-prompt"), "a lighthouse on a cliff at dusk")
    css(driver, "details.advanced summary").click()
    fill(css(driver, "#input-num_inference_steps"), "8")
    fill(css(driver, 'input[name="loras-0-path"]'), "https://example.test/style.safetensors")
    rows = len(css_all(driver, "#rows-loras [data-row]"))
    css(driver, "#rows-loras [data-add-row]").click()
    assert len(css_all(driver, "#rows-loras [data-row]")) == rows + 1
    fill(css_all(driver, "#rows-loras [data-row] input[name$='-path']")[-1],
         "https://example.test/other.safetensors")
    # a 422 swapped in by htmx first, then the real submit
    fill(css(driver, "#input-num_images"), "99")
    css(driver, "#model-form button[type=submit]").click()
    wait(driver, lambda d: css_all(d, "#form-errors"), message="validation errors")
    fill(css(driver, "#input-num_images"), "1")
    css(driver, "#model-form button[type=submit]").click()
    request_id = wait_for_request_page(driver)

    # the request page polls (htmx swaps, the spinner animates) until the images are shown
    wait_until(lambda: status_of(driver) == "COMPLETED", timeout=30, interval=0.05,
               message="the request page to show COMPLETED")
    wait_images_loaded(driver)
    css(driver, "details.raw summary").click()
    css(driver, "[data-copy='#result-seed']").click()

    # history, with its thumbnail
    css(driver, 'a[href="/history"]').click()
    wait(driver, lambda d: d.current_url.endswith("/history"), message="history")
    assert css_all(driver, f"#history-{request_id} .thumb img")

    # live mode: typing brings an image over the websocket (connect-src 'self' covers ws:)
    driver.get(server.url + "/live/fal-ai/fast-lcm-diffusion")
    css(driver, "#live-prompt").send_keys("a cozy cabin in the snow")
    wait(driver, lambda d: (css(d, "#live-image").get_attribute("src") or "").startswith(
        "data:image/"), message="a live image")

    chromium.assert_meets_csp(driver, server.app, server.url)
    assert counter.count == 1  # the control's report alone


def test_a_violation_is_seen_both_ways(browser, server):  # noqa: F811
    # The checks above can fail: an inline script is refused, logged and reported.
    driver = browser.driver
    driver.get(server.url + "/history")
    driver.get_log("browser")
    driver.execute_script(
        "var s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        "document.head.appendChild(s);")
    assert driver.execute_script("return window.ran") is None
    with pytest.raises(AssertionError):
        chromium.assert_meets_csp(driver, server.app, server.url)
    assert server.app.extensions["csp_reports"].count == 2
