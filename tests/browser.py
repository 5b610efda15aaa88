"""Headless Chromium for the browser tests (Debian's ``chromium`` + ``chromium-driver``)."""

import json
import os
import shutil
import tempfile

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")

# Flags that work headless as root in a container, and keep Chromium off the network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(_ROOT, "test-artifacts")


def _first(paths, env):
    found = os.environ.get(env)
    if found:
        return found if os.path.exists(found) else None
    return next((path for path in paths if os.path.exists(path)), None)


def find_chromium():
    """(chromium binary, chromedriver) paths, or None for each one that is missing."""
    return (
        _first(CHROMIUM_CANDIDATES, "FALWEB_CHROMIUM"),
        _first(CHROMEDRIVER_CANDIDATES, "FALWEB_CHROMEDRIVER"),
    )


def missing_reason():
    """Why browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    binary, driver = find_chromium()
    if binary is None or driver is None:
        return (
            "headless Chromium not found: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver)"
        )
    return None


class Browser:
    """A Selenium Chrome driver in a fresh profile; ``quit()`` removes the profile.

    ``javascript=False`` turns scripts off, to check the pages work without them.
    """

    def __init__(self, javascript=True):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        binary, driver = find_chromium()
        self.profile = tempfile.mkdtemp(prefix="falweb-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        # The console (driver.get_log("browser")) shows failed loads, such as a missing icon.
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(30)
        self.size = None

    def viewport(self, width=None, height=None):
        """Lay pages out in a ``width``×``height`` CSS-pixel viewport (a phone: 390×844);
        no size: back to the window's own.

        Emulated through DevTools, as a window cannot be made narrower than Chromium's
        minimum; not as a mobile device, so ``innerWidth`` stays the viewport's width even
        when a page overflows it (which the layout tests look for).
        """
        if width is None:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            self.size = None
        else:
            self.size = (width, height)
            self._emulate(width, height)

    def _emulate(self, width, height):
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def screenshot(self, name):
        """Save a full-page PNG as ``test-artifacts/<name>.png``; returns its path.

        The width is the emulated viewport's (:meth:`viewport`), else 1280 pixels.
        """
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, f"{name}.png")
        driver = self.driver
        height = driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        full = min(max(int(height) + 40, 700), 4000)
        if self.size:
            self._emulate(self.size[0], full)
            driver.save_screenshot(path)
            self._emulate(*self.size)
            return path
        driver.set_window_size(1280, full)
        driver.save_screenshot(path)
        driver.set_window_size(1280, 1000)
        return path

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


# -- the Content-Security-Policy ------------------------------------------------------------

# An image the policy blocks (img-src allows no plain http from other hosts): loaded on
# purpose at the end of a check, its report proves that reports reach the app in time.
CSP_CONTROL = "http://csp-control.invalid/control.png"


def csp_console(driver):
    """Chromium's console lines since the last read that say the policy blocked something."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]]


def assert_meets_csp(driver, app, base_url, javascript=True, timeout=10):
    """Nothing the browser did so far broke the app's Content-Security-Policy: no line in
    the console and no report at ``/csp-report`` (``app.extensions["csp_reports"]``).

    With scripts on, a deliberate violation goes last and its report is awaited, so reports
    still on their way are counted too. Reads (and so clears) the console log.
    """
    from falweb.testing import wait_until

    console = csp_console(driver)
    counter = app.extensions["csp_reports"]
    expected = 0
    if javascript:
        if not driver.current_url.startswith(base_url):
            driver.get(base_url + "/")
        driver.execute_script("new Image().src = arguments[0];", CSP_CONTROL)
        wait_until(lambda: any("csp-control.invalid" in json.dumps(report)
                               for report in list(counter.recent)),
                   timeout=timeout, message="the control violation's report")
        csp_console(driver)  # the control's own line
        expected = 1
    reports = [report for report in list(counter.recent)
               if "csp-control.invalid" not in json.dumps(report)]
    assert console == [], console
    assert counter.count == expected, reports
