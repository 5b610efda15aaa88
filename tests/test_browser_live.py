"""Live mode in headless Chromium: typing a prompt brings a new image over the websocket."""

import os

import pytest

from tests import browser as chromium
from tests.test_browser import css
from tests.test_browser import meets_the_csp  # noqa: F401 -- checks the CSP after each test
from tests.test_browser import server  # noqa: F401 -- the app on a real port
from tests.test_browser import wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_typing_brings_new_images(browser, server):  # noqa: F811
    driver = browser.driver
    driver.get(server.url + "/live/fal-ai/fast-lcm-diffusion")
    # The prompt box starts empty: typing must not add to an example prompt.
    prompt = css(driver, "#live-prompt")
    assert prompt.get_attribute("value") == ""
    wait(driver, lambda d: "prompt" in css(d, "#live-status").text.lower(),
         message="an invitation to type")
    prompt.send_keys("a cozy cabin in the snow")
    wait(driver, lambda d: (css(d, "#live-image").get_attribute("src") or "").startswith(
        "data:image/"), message="a first live image")
    first = css(driver, "#live-image").get_attribute("src")
    assert "Seed 42" in css(driver, "#live-status").text
    assert "ynthetic" in css(driver, "figcaption").text

    prompt.clear()
    prompt.send_keys("a red bicycle in the rain")
    wait(driver, lambda d: css(d, "#live-image").get_attribute("src") not in ("", first),
         message="a new image for the new prompt")

    seed = css(driver, "#live-seed")
    seed.clear()
    seed.send_keys("-5")
    wait(driver, lambda d: "seed" in css(d, "#live-errors").text,
         message="the seed's error shown")
    driver.save_screenshot(os.path.join(chromium.ARTIFACTS, "live.png"))


def test_a_seed_past_2_53_keeps_every_digit(browser, server):  # noqa: F811
    # 1123118605902879207 is no JS number: as a double it reads 1123118605902879200.
    seed_text = "1123118605902879207"
    driver = browser.driver
    driver.get(server.url + "/live/fal-ai/fast-lcm-diffusion")
    css(driver, "#live-prompt").send_keys("a lantern in the fog")
    seed = css(driver, "#live-seed")
    seed.clear()
    seed.send_keys(seed_text)
    wait(driver, lambda d: seed_text in css(d, "#live-status").text,
         message=f"Seed {seed_text} shown")
    assert css(driver, "#live-errors").text == ""
    browser.screenshot("live-big-seed")
