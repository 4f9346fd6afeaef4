"""Cancel in the playground stops a running generation: `stillhouse up` with a local
worker whose ComfyUI is the double, so a job runs long enough to be stopped."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage
from tests.system.up_process import start_up

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_up(tmp_path: Path) -> Iterator[str]:
    process, running = start_up(tmp_path, "--step-time", "0.25")
    yield running.api
    process.send_signal(signal.SIGINT)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def test_cancel_stops_a_running_generation_and_clears_its_progress(
    slow_up: str, open_page: OpenPage
) -> None:
    page = open_page(slow_up)
    page.fill("#prompt", "a lighthouse, slowly")
    page.click("#more summary")
    page.fill("#param-steps", "60")  # 15 s unless stopped
    page.click("#go")
    expect(page.locator("#status")).to_contain_text("Making it")
    expect(page.locator("#bar-box")).to_be_visible()
    generation = page.evaluate("location.hash.slice(1)")
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("Cancelled.")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#bar-box")).to_be_hidden()
    expect(page.locator("#images img")).to_have_count(0)
    view = requests.get(f"{slow_up}/v1/generations/{generation}", timeout=10).json()
    assert view["status"] == "cancelled"
