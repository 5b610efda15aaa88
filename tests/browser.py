"""Headless Chromium for the browser tests (Debian's ``chromium`` + ``chromium-driver``)."""

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
