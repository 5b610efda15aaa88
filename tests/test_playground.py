"""The playground: form and result side by side on a wide screen, stacked on a phone, the
result swapped in with htmx while the request keeps its permalink; the API tab's calls run."""

import html
import json
import re
import subprocess
import sys

import pytest

from falweb.testing import serve_app
from tests.test_browser import css
from tests.test_browser import css_all
from tests.test_browser import fill
from tests.test_browser import meets_the_csp  # noqa: F401 - autouse: every page meets the CSP
from tests.test_browser import status_of
from tests.test_browser import wait


@pytest.fixture
def server(tmp_path):
    with serve_app({"TESTING": True, "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0,
                    "FALWEB_INSTANCE_PATH": str(tmp_path)}) as server:
        yield server


def box(driver, selector):
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right];",
        css(driver, selector))


@pytest.mark.browser
@pytest.mark.slow
def test_result_swaps_in_beside_the_form_and_keeps_its_permalink(browser, server):
    driver = browser.driver
    browser.viewport(1400, 900)
    try:
        driver.get(server.url + "/playground/fal-ai/flux/schnell")
        form, result = box(driver, ".playground__form"), box(driver, "#playground-result")
        assert result[0] >= form[2] and abs(result[1] - form[1]) < 5  # side by side
        fill(css(driver, "#input-prompt"), "a kite over the dunes")
        driver.execute_script("document.getElementById('input-image_size').value = 'square'")
        css(driver, "#model-form button[type=submit]").click()
        wait(driver, lambda d: status_of(d) == "COMPLETED", timeout=30, message="the result")
        assert "/playground/fal-ai/flux/schnell" in driver.current_url  # no page change
        wait(driver, lambda d: css_all(d, "#playground-result .images img"), message="images")
        permalink = css(driver, "#playground-permalink").get_attribute("href")
        browser.screenshot("playground-wide")
        # The API tab: the exact call for this input.
        css(driver, "label[for^='tab-api-']").click()
        python = css(driver, "pre[id^='api-python-']").text
        assert "fal.subscribe(" in python and "'a kite over the dunes'" in python
        browser.screenshot("playground-wide-api")
        # A second submit makes a second request (the form got a fresh token).
        first = permalink
        css(driver, "#model-form button[type=submit]").click()
        wait(driver, lambda d: css(d, "#playground-permalink").get_attribute("href") != first,
             message="a new request")
        driver.get(permalink)
        assert css(driver, "section.status").get_attribute("data-status") == "COMPLETED"
        # On a phone: stacked, the result under the form.
        browser.viewport(390, 844)
        driver.get(server.url + "/playground/fal-ai/flux/schnell")
        form, result = box(driver, ".playground__form"), box(driver, "#playground-result")
        assert result[1] > form[1] and result[0] < form[2]
        browser.screenshot("playground-phone")
    finally:
        browser.viewport()


def test_the_api_calls_shown_for_a_request_run_as_written(server, tmp_path):
    import requests

    with requests.Session() as session:
        form = session.get(f"{server.url}/models/openrouter/router", timeout=10).text
        fields = dict(re.findall(r'name="(csrf_token|submission_token)" value="([^"]+)"', form))
        posted = session.post(f"{server.url}/models/openrouter/router", timeout=10, data={
            **fields, "prompt": "it's a test", "model": "google/gemini-2.5-flash"})
        assert posted.status_code == 200 and "/requests/" in posted.url, posted.text[:500]
        request_id = posted.url.rsplit("/", 1)[1]
        page = session.get(posted.url, timeout=10).text

    def snippet(name):
        found = re.search(rf'id="api-{name}-{request_id}">(.*?)</pre>', page, re.S)[1]
        return html.unescape(found)

    curl = snippet("curl")
    assert curl.startswith(f"curl -X POST '{server.url}/local/queue/openrouter/router'")
    answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    assert json.loads(answer.stdout)["request_id"]
    python = snippet("python")
    assert python.splitlines()[0] == f"# export FALWEB_LOCAL_URL={server.url}/local"
    script = tmp_path / "call.py"
    script.write_text(python)
    env = {"FALWEB_LOCAL_URL": f"{server.url}/local", "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([sys.executable, str(script)], capture_output=True,
                         text=True, timeout=60, env=env)
    assert ran.returncode == 0, ran.stderr
    assert "SYNTHETIC PREVIEW" in ran.stdout
    assert 'fal.config({ proxyUrl: "' + server.url + '/api/fal/proxy" });' in snippet("javascript")
