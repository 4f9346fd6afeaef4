"""Vary Region's mask editor in a real browser: the link the bot hands out opens the
image, a stroke painted with the mouse (after one undone) becomes the mask of a queued
inpaint job, white exactly where the brush went; a bad link says so.

The app runs under uvicorn in this process, on its own SQLite queue and image folder,
so that the test can make the Discord result the link points at and read the job the
page queued."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import Page, expect

from api.app import make_app
from stillhouse.config import make_settings
from stillhouse.db.engine import make_engine
from stillhouse.db.migrate import upgrade
from stillhouse.edit_links import edit_link
from stillhouse.ids import new_owner
from stillhouse.intake import GenerationRequest, Requester
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.worker_io import ImageRef
from stillhouse.services import Services
from stillhouse.storage.base import new_key
from tests.bot.conftest import make_services
from tests.bot.harness import CHANNEL, GUILD, USER
from tests.browser.conftest import SIZES, OpenPage
from tests.browser.test_playground import assert_fits
from tests.support import free_port, wait_until

SECRET = "vary-region-browser-secret-0123456789"
EDIT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edit_workflows"
WIDTH, HEIGHT = 320, 240


@dataclass
class Running:
    base: str
    services: Services


@pytest.fixture
def editor_app(tmp_path: Path) -> Iterator[Running]:
    """The app with Vary Region on, served on a free port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        database={"url": f"sqlite:///{tmp_path / 'queue.sqlite3'}"},
        data_dir=tmp_path / "data",
        api={"edit_link_secret": SECRET, "public_url": base},
        storage={"public_base_url": f"{base}/files"},
        workflows={"dir": str(EDIT_FIXTURES)},
    )
    engine = make_engine(settings)
    upgrade(engine)
    services = make_services(engine, settings)
    config = uvicorn.Config(
        make_app(services), host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="vary-region-app", daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to listen")
    yield Running(base, services)
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


def discord_result(services: Services) -> str:
    """A finished /serve of USER in CHANNEL with one WIDTHxHEIGHT image: its id."""
    values = {"prompt": "a lighthouse at dawn"}
    bound = services.intake.prepare(GenerationRequest(workflow="edit-source-sd15", values=values))
    requester = Requester(source="discord", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    public_id = services.intake.submit(bound, requester).enqueued.job.public_id
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (40, 90, 160)).save(buffer, format="PNG")
    data = buffer.getvalue()
    key = new_key("stillhouse/", public_id, "png")
    stored = services.storage.put(key, data, "image/png")
    ref = ImageRef(
        key=key,
        bucket=stored.bucket,
        content_type="image/png",
        width=WIDTH,
        height=HEIGHT,
        bytes=len(data),
        sha256=stored.sha256,
        node_id="9",
    )
    [job] = wait_until(lambda: services.queue.claim(new_owner("test-master"), 1))
    services.queue.complete(job, JobResult(images=[ref]))
    return public_id


def stroke(page: Page, points: list[tuple[float, float]]) -> None:
    """Drag the mouse over the canvas through `points` (fractions of its size)."""
    box = page.locator("#paint").bounding_box()
    assert box is not None
    at = [(box["x"] + box["width"] * x, box["y"] + box["height"] * y) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=8)
    page.mouse.up()


def test_a_stroke_painted_with_the_mouse_becomes_the_white_of_the_queued_mask(
    editor_app: Running, open_page: OpenPage
) -> None:
    services = editor_app.services
    source = discord_result(services)
    url = edit_link(services.settings, source, 0, USER, GUILD, CHANNEL, 0)
    assert url is not None and url.startswith(editor_app.base)
    page = open_page(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#prompt")).to_have_value("a lighthouse at dawn")
    expect(page.locator("#source")).to_have_js_property("naturalWidth", WIDTH)
    assert page.locator("#brush").input_value() == "20"  # a 16th of the longer side

    stroke(page, [(0.05, 0.1), (0.2, 0.1)])  # a slip, undone
    expect(page.locator("#undo")).to_be_enabled()
    page.click("#undo")
    expect(page.locator("#undo")).to_be_disabled()
    stroke(page, [(0.25, 0.5), (0.5, 0.5), (0.75, 0.5)])
    page.fill("#prompt", "a red balloon")
    page.click("#submit")
    expect(page.locator("#status")).to_contain_text("Sent: the result will appear in Discord.")
    job_id = page.locator("#status").get_attribute("data-job")

    job = services.queue.get(str(job_id))
    assert job is not None and job.workflow_name == "edit-inpaint-sd15"
    assert job.params.root["prompt"] == "a red balloon"
    assert (job.routing.user_id, job.routing.channel_id) == (USER, CHANNEL)
    mask = Image.open(io.BytesIO(services.storage.get(str(job.params.root["mask"]))))
    assert mask.size == (WIDTH, HEIGHT)
    y = HEIGHT // 2
    for x in range(int(WIDTH * 0.25), int(WIDTH * 0.75) + 1, 8):
        assert mask.getpixel((x, y)) == 255, f"painted at {x},{y}"
    left, top, right, bottom = mask.getbbox() or (0, 0, 0, 0)
    brush = 20
    assert abs(left - WIDTH * 0.25 + brush / 2) <= 3 and abs(right - WIDTH * 0.75 - brush / 2) <= 3
    assert abs(top - (y - brush / 2)) <= 3 and abs(bottom - (y + brush / 2)) <= 3
    assert mask.getpixel((int(WIDTH * 0.1), int(HEIGHT * 0.1))) == 0, "the undone stroke"


def test_a_tampered_link_shows_why_it_opens_nothing(
    editor_app: Running, open_page: OpenPage
) -> None:
    services = editor_app.services
    url = edit_link(services.settings, discord_result(services), 0, USER, GUILD, CHANNEL, 0)
    assert url is not None
    page = open_page(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))
    expect(page.locator("#status")).to_have_text(
        "This link is not valid: press Vary Region under the image in Discord again."
    )
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#editor")).to_be_hidden()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_the_editor_fits_the_screen_and_paints_at_desktop_and_phone_widths(
    editor_app: Running, open_page: OpenPage, size: str
) -> None:
    services = editor_app.services
    url = edit_link(services.settings, discord_result(services), 0, USER, GUILD, CHANNEL, 0)
    assert url is not None
    page = open_page(url, SIZES[size])
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    assert_fits(page)
    box = page.locator("#paint").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= SIZES[size]["width"]
    stroke(page, [(0.3, 0.5), (0.7, 0.5)])
    page.click("#submit")
    expect(page.locator("#status")).to_contain_text("Sent: the result will appear in Discord.")
    assert_fits(page)
