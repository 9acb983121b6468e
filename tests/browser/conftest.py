"""One headless Chromium per browser test module (skipped without Playwright or Chromium)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from playwright.sync_api import Browser, sync_playwright

from tests.browser.mlflow_ui import CHROMIUM, launch_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright, shared by the tests of a module.

    Not by the session: while Playwright's sync API is open, its event loop counts as running
    in this thread, and a later test's ``asyncio.run`` would refuse to start."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
