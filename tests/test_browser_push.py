"""The request page in headless Chromium: its status pushed over server-sent events, with
the 1 s poll as the fallback (falweb/status_events.py, static/js/app.js).

The app counts the requests it answers, so a test can tell pushed updates from polled ones.
"""

from contextlib import contextmanager

import pytest
from flask import request

from falweb.testing import serve_app
from falweb.testing import wait_until
from tests.test_browser import css
from tests.test_browser import fill
from tests.test_browser import meets_the_csp  # noqa: F401 - used by every test here
from tests.test_browser import status_of
from tests.test_browser import wait_for_request_page
from tests.test_browser import wait_images_loaded
from tests.test_status_events import config

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@contextmanager
def counting_server(tmp_path, **settings):
    """The app (CSRF on, as in production) listing the paths of the requests it answers in
    ``server.paths``."""
    with serve_app(config(tmp_path, WTF_CSRF_ENABLED=True, **settings)) as server:
        server.paths = []
        server.app.before_request(lambda: server.paths.append(request.path))
        yield server


@pytest.fixture
def server(tmp_path):
    # Steps slower than the polls' second: the page shows no change for longer than that,
    # when a poll would go out if the stream did not hold it back.
    with counting_server(tmp_path, FALWEB_LOCAL_STEP_DELAY=1.2) as server:
        yield server


@pytest.fixture
def polling_server(tmp_path):
    with counting_server(tmp_path, FALWEB_STATUS_STREAMS_MAX=0) as server:
        yield server


def submitted(browser, server, steps=30):
    """Submit a slow request with the form; returns its id, with its page open."""
    driver = browser.driver
    driver.get(server.url + "/models/fal-ai/fast-sdxl")
    fill(css(driver, "#input-prompt"), "a lighthouse at dusk")
    css(driver, "details.advanced summary").click()
    fill(css(driver, "#input-num_inference_steps"), str(steps))
    css(driver, "#model-form button[type=submit]").click()
    return wait_for_request_page(driver)


def follow(browser):
    """Wait until the open request page shows its request completed, with its images;
    returns the statuses it showed on the way."""
    driver = browser.driver
    seen = set()

    def completed():
        seen.add(status_of(driver))
        return "COMPLETED" in seen

    wait_until(completed, timeout=60, interval=0.05, message="the page to show COMPLETED")
    wait_images_loaded(driver)
    return seen


def test_pushed_updates_reach_completed_without_a_single_poll(browser, server):
    request_id = submitted(browser, server, steps=4)
    seen = follow(browser)
    assert seen & {"IN_QUEUE", "IN_PROGRESS"}, seen  # it ran while the page watched
    assert "Preview engine" in css(browser.driver, "details.logs").get_attribute("textContent")
    assert server.paths.count(f"/requests/{request_id}/status/events") >= 1
    assert f"/requests/{request_id}/status" not in server.paths
    # The stream told the page that it is over: its EventSource is closed, not reconnecting.
    wait_until(lambda: browser.driver.execute_script(
        "return document.querySelector('.status-events')['htmx-internal-data']"
        ".sseEventSource.readyState") == 2, message="the page's EventSource to be closed")
    assert server.paths.count(f"/requests/{request_id}/status/events") == 1


def test_with_push_off_the_page_completes_by_polling(browser, polling_server):
    request_id = submitted(browser, polling_server)
    follow(browser)
    assert f"/requests/{request_id}/status/events" not in polling_server.paths
    assert polling_server.paths.count(f"/requests/{request_id}/status") >= 1


def test_a_refused_stream_leaves_the_page_polling(browser, tmp_path):
    with counting_server(tmp_path, FALWEB_STATUS_STREAMS_MAX=1) as server:
        # The one stream this process may hold is taken: the page's is refused (204).
        assert server.app.extensions["falweb_status_events"]["streams"].acquire(blocking=False)
        request_id = submitted(browser, server)
        follow(browser)
        assert server.paths.count(f"/requests/{request_id}/status/events") == 1  # no retries
        assert server.paths.count(f"/requests/{request_id}/status") >= 1
