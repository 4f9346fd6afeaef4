"""The README's screenshots of the playground, after a request in preview mode, on a
desktop (1280x900) and a phone (390x844, the whole page):

    .venv/bin/python -m tests.browser.screenshots   # writes docs/playground*.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, expect, sync_playwright

from tests.browser.conftest import CHROMIUM, PHONE, WIDE
from tests.browser.servers import ROOT, preview_up

SHOTS = {"playground.png": WIDE, "playground-phone.png": PHONE}
PROMPT = "a lighthouse at dawn, oil painting"


def take(browser: Browser, base: str, size: dict[str, int], target: Path) -> None:
    """A screenshot after a finished request: the viewport on a desktop, the whole page
    (form, result, gallery) on a phone."""
    context = browser.new_context(viewport=size, device_scale_factor=1)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(base)
    page.fill("#prompt", PROMPT)
    page.click("#go")
    expect(page.locator("#status")).to_contain_text("Done", timeout=30_000)
    expect(page.locator("#gallery img").first).to_be_visible()
    page.evaluate("Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
    page.screenshot(path=str(target), full_page=size is PHONE)
    context.close()


def main(out: Path = ROOT / "docs") -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        preview_up(Path(tmp)) as base,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        for name, size in SHOTS.items():
            take(browser, base, size, out / name)
            print(out / name)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
