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
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(30)

    def screenshot(self, name):
        """Save a full-page PNG as ``test-artifacts/<name>.png``; returns its path."""
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, f"{name}.png")
        driver = self.driver
        height = driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        driver.set_window_size(1280, min(max(int(height) + 40, 700), 4000))
        driver.save_screenshot(path)
        driver.set_window_size(1280, 1000)
        return path

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
