"""A real browser (Debian's Chromium, driven by Playwright) against a real `stillhouse up`.
One preview server serves the whole package; each test gets a fresh browser context, and
fails on any uncaught error in the page."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.servers import preview_up

CHROMIUM = os.environ.get("STILLHOUSE_TEST_CHROMIUM", "/usr/bin/chromium")
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = {"wide": WIDE, "phone": PHONE}

expect.set_options(timeout=15_000)  # a loaded CI machine; passing runs never wait this long


# Package scope, not session: Playwright's sync API keeps an event loop running in the
# main thread while it lives, and every later test's asyncio.run() would refuse to start.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a preview-mode `stillhouse up`."""
    with preview_up(tmp_path_factory.mktemp("up")) as base:
        yield base


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """open_page(url, size=WIDE): a page in a fresh context; page errors fail the test."""
    contexts = []
    errors: list[str] = []

    def opened(url: str, size: dict[str, int] = WIDE) -> Page:
        context = browser.new_context(viewport=size)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        return page

    yield opened
    for context in contexts:
        context.close()
    assert not errors, f"errors in the page: {errors}"
