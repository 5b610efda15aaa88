"""Layout in headless Chromium at a phone's width and a desktop's.

Nothing may push a page sideways (long prompts, long help text, the custom size boxes); the
controls a person needs (Delete, + Add row) appear when they can be used; error pages keep the
app's layout; the live page says plainly when it cannot work. Screenshots go to
``test-artifacts/``.
"""

import pytest

from tests.test_browser import css
from tests.test_browser import css_all
from tests.test_browser import fill
from tests.test_browser import meets_the_csp  # noqa: F401 -- checks the CSP after each test
from tests.test_browser import no_js_browser  # noqa: F401 -- the same, scripts off
from tests.test_browser import server  # noqa: F401 -- the app on a real port
from tests.test_browser import wait
from tests.test_browser import wait_for_request_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIZES = {"phone": (390, 844), "desktop": (1280, 900)}

# One word no line can break, and an ordinary long sentence.
LONG_PROMPTS = (
    "supercalifragilisticexpialidocious" * 7,
    "a lighthouse on a cliff at dusk, waves crashing below, " * 4,
)

# Whether the page scrolls sideways: its content against the viewport's width (scrollbar
# excluded, as clientWidth is).
PAGE_WIDTH = (
    "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
)

# Elements of arguments[0] (a container) whose box sticks out of its left or right edge.
STICKING_OUT = """
const box = arguments[0].getBoundingClientRect();
const out = [];
for (const el of arguments[0].querySelectorAll("*")) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && (r.left < box.left - 0.5 || r.right > box.right + 0.5)) {
    out.push(`${el.tagName.toLowerCase()}.${el.className} ${r.left}..${r.right}`);
  }
}
return out;
"""


@pytest.fixture(params=list(SIZES))
def size(request, browser):  # noqa: F811
    browser.viewport(*SIZES[request.param])
    yield request.param
    browser.viewport()


def assert_no_sideways_scroll(driver):
    content, viewport = driver.execute_script(PAGE_WIDTH)
    assert content <= viewport, f"the page is {content} px wide in a {viewport} px viewport"


def test_history_with_long_prompts_fits_the_screen(browser, server, size):  # noqa: F811
    driver = browser.driver
    for prompt in LONG_PROMPTS:
        driver.get(server.url + "/models/fal-ai/fast-sdxl")
        fill(css(driver, "#input-prompt"), prompt)
        css(driver, "#model-form button[type=submit]").click()
        wait_for_request_page(driver)
        assert_no_sideways_scroll(driver)  # the request page's heading is the prompt
    driver.get(server.url + "/history")
    assert len(css_all(driver, "#history-list .history-row")) == len(LONG_PROMPTS)
    assert_no_sideways_scroll(driver)
    viewport = driver.execute_script("return document.documentElement.clientWidth")
    for button in css_all(driver, ".history-row__delete button"):
        left, right = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.left, r.right]", button)
        assert 0 <= left and right <= viewport, f"Delete at {left}..{right} of {viewport}"
    browser.screenshot(f"history-long-prompts-{size}")


@pytest.mark.parametrize("endpoint_id", ["fal-ai/lora", "fal-ai/realistic-vision"])
def test_form_fields_stay_inside_their_column(browser, server, size, endpoint_id):  # noqa: F811
    from selenium.webdriver.support.ui import Select

    driver = browser.driver
    driver.get(server.url + f"/models/{endpoint_id}")
    css(driver, "details.advanced summary").click()
    Select(css(driver, "#input-image_size")).select_by_value("custom")
    assert css(driver, 'input[name="image_size_height"]').is_displayed()
    assert_no_sideways_scroll(driver)
    assert driver.execute_script(STICKING_OUT, css(driver, "#model-form")) == []
    for field in css_all(driver, "#model-form .field"):
        sticking_out = driver.execute_script(STICKING_OUT, field)
        assert sticking_out == [], f"{field.get_attribute('id')}: {sticking_out}"
    browser.screenshot(f"form-{endpoint_id.split('/')[-1]}-custom-size-{size}")


@pytest.mark.parametrize("path", ["/", "/models/fal-ai/fast-lcm-diffusion", "/live/",
                                  "/live/fal-ai/fast-lcm-diffusion"])
def test_other_pages_fit_the_screen(browser, server, size, path):  # noqa: F811
    driver = browser.driver
    driver.get(server.url + path)
    assert_no_sideways_scroll(driver)
    if path.startswith("/live/fal-ai"):
        # Before any prompt: an invitation to type, an empty frame (no broken image).
        wait(driver, lambda d: "prompt" in css(d, "#live-status").text.lower(),
             message="an invitation to type")
        assert driver.execute_script(
            "return getComputedStyle(arguments[0]).visibility", css(driver, "#live-image")
        ) == "hidden"
    name = path.strip("/").replace("/", "-").replace("fal-ai-", "") or "catalog"
    browser.screenshot(f"fit-{name}-{size}")


def test_add_row_disappears_at_the_maximum(browser, server):  # noqa: F811
    driver = browser.driver
    driver.get(server.url + "/models/fal-ai/lora")
    css(driver, "details.advanced summary").click()
    loras = css(driver, "#rows-loras")
    maximum = int(loras.get_attribute("data-max-rows"))
    add = css(driver, "#rows-loras [data-add-row]")
    while len(css_all(driver, "#rows-loras [data-row]")) < maximum:
        assert add.is_displayed()
        add.click()
    assert not add.is_displayed()
    css_all(driver, "#rows-loras [data-remove-row]")[-1].click()
    assert add.is_displayed()
    # A list already full when the page is drawn (one embedding at most) offers no new row.
    assert css(driver, "#rows-embeddings").get_attribute("data-max-rows") == "1"
    assert not css(driver, "#rows-embeddings [data-add-row]").is_displayed()


@pytest.mark.parametrize("path", ["/nope", "/live/fal-ai/fast-sdxl"])
def test_not_found_pages_keep_the_layout(browser, server, size, path):  # noqa: F811
    driver = browser.driver
    driver.get(server.url + path)
    assert css(driver, ".topbar nav a[href='/history']").is_displayed()
    assert css(driver, "main h1").text == "Not found"
    assert_no_sideways_scroll(driver)
    if path == "/nope":
        browser.screenshot(f"not-found-{size}")


def test_no_missing_icon_in_the_console(browser, server):  # noqa: F811
    driver = browser.driver
    driver.get_log("browser")  # forget what earlier tests logged
    driver.get(server.url + "/")
    driver.get(server.url + "/history")
    failed = [entry["message"] for entry in driver.get_log("browser")
              if "favicon" in entry["message"] or "404" in entry["message"]]
    assert failed == []
    icon = css(driver, "link[rel=icon]").get_attribute("href")
    status = driver.execute_async_script(
        "fetch(arguments[0]).then(r => arguments[1](r.status))", icon)
    assert status == 200


def test_realtime_form_links_to_its_live_page(browser, server):  # noqa: F811
    driver = browser.driver
    driver.get(server.url + "/models/fal-ai/fast-lcm-diffusion")
    css(driver, 'a[href="/live/fal-ai/fast-lcm-diffusion"]').click()
    wait(driver, lambda d: d.current_url.endswith("/live/fal-ai/fast-lcm-diffusion"),
         message="the live page")
    assert css(driver, "#live-prompt").get_attribute("value") == ""
    assert css(driver, "#live-prompt").get_attribute("placeholder")
    driver.get(server.url + "/models/fal-ai/fast-sdxl")  # no live mode, no link
    assert css_all(driver, 'a[href^="/live/"]:not(.topbar a)') == []


def test_live_page_without_javascript_says_so(no_js_browser, server):  # noqa: F811
    driver = no_js_browser.driver
    driver.get(server.url + "/live/fal-ai/fast-lcm-diffusion")
    assert "needs JavaScript" in css(driver, ".live").text
    assert not css(driver, "#live-status").is_displayed()  # no endless "Connecting…"
    assert not css(driver, "#live-image").is_displayed()  # no broken image
    no_js_browser.screenshot("live-no-js")
