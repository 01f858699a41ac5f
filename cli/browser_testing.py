"""Headless Chromium for the console's tests and benchmark (shipped with the package):
Debian's ``chromium`` and ``chromium-driver`` driven through Selenium (extra ``test``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

#: headless Chromium as tests and benchmarks run it: no GPU, no network of its own
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when Debian's packages are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(
    profile: Path, size: str = "1400,900", flags: tuple[str, ...] = (), logs: bool = True
) -> Any:
    """Headless Chromium through Selenium with a fresh profile (``flags`` added to
    CHROME_FLAGS); with ``logs``, the page's console log is kept for reading."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = chromium()
    if found is None:
        raise RuntimeError("needs Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    for flag in (*CHROME_FLAGS, *flags):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={size}")
    opts.binary_location = found[0]
    if logs:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(found[1]), options=opts)
