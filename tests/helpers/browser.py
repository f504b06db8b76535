"""Headless Debian Chromium driven by Selenium, for the browser tests (no browser downloads).

``chrome()`` yields a WebDriver pointed at ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``;
``SKIP_REASON`` is the one-line reason the browser tests skip when either is missing.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _skip_reason() -> str | None:
    if not shutil.which(CHROMIUM) or not shutil.which(CHROMEDRIVER):
        return "no Chromium: apt-get install chromium chromium-driver (as .ci/run does) to run the browser tests"
    try:
        import selenium  # noqa: F401  (optional dev dependency)
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


SKIP_REASON = _skip_reason()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def chrome(width: int = 1400, height: int = 1000):
    from selenium import webdriver  # optional dev dependency: only when a browser test runs
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate()`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
