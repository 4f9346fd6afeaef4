"""The playground in a real browser against a preview-mode `stillhouse up`: a prompt
becomes an image, the form follows the workflow, an image workflow takes an upload (file
picker or drag and drop), a refusal leaves no stale result, nothing overflows on a phone
or a desktop, and the API reference renders with no network."""

from __future__ import annotations

import base64
import io
from urllib.parse import urlparse

import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import SIZES, WIDE, OpenPage

# Every visible element's box, against the viewport's width.
OVERFLOW = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("body *")) {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.left < -0.5 || box.right > innerWidth + 0.5) {
      const where = `${Math.round(box.left)}..${Math.round(box.right)}`;
      bad.push(`${el.tagName.toLowerCase()}#${el.id} ${where}`);
    }
  }
  return { scroll: document.scrollingElement.scrollWidth, inner: innerWidth, bad };
}"""


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def generate(page: Page, prompt: str = "a lighthouse at dawn") -> str:
    """Press Generate and wait for the result; the generation's id."""
    page.fill("#prompt", prompt)
    page.click("#go")
    expect(page.locator("#status")).to_contain_text("Done")
    return str(page.evaluate("location.hash.slice(1)"))


def choose_workflow(page: Page, name: str) -> None:
    expect(page.locator(f"#workflow option[value='{name}']")).to_have_count(1)
    page.select_option("#workflow", name)


def assert_fits(page: Page) -> None:
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= found["inner"], found
    assert not found["bad"], found["bad"]


def test_a_prompt_becomes_an_image_with_progress_and_a_gallery_tile(
    up: str, open_page: OpenPage
) -> None:
    page = open_page(up)
    generation = generate(page, "a lighthouse at dawn, oil painting")
    image = page.locator("#images img")
    expect(image).to_have_count(1)
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") == 512
    expect(page.locator("#bar-box")).to_be_hidden()
    expect(page.locator("#cancel")).to_be_hidden()
    tile = page.locator(f"#gallery a[href='#{generation}'] img")
    expect(tile).to_be_visible()
    assert tile.evaluate("img => img.naturalWidth") > 0
    # A fresh visit shows the gallery from the server, and a tile opens its result.
    other = open_page(up)
    other.click(f"#gallery a[href='#{generation}']")
    expect(other.locator("#prompt")).to_have_value("a lighthouse at dawn, oil painting")
    expect(other.locator("#images img")).to_have_count(1)


def test_the_form_follows_the_chosen_workflow(up: str, open_page: OpenPage) -> None:
    page = open_page(up)
    choose_workflow(page, "flux-schnell-txt2img")
    expect(page.locator("#negative")).to_be_hidden()  # FLUX takes no negative prompt
    expect(page.locator("#image-box")).to_be_hidden()
    expect(page.locator("#aspect option")).to_have_text(
        ["default", "landscape", "portrait", "square"]
    )
    page.click("#more summary")
    expect(page.locator("#param-steps")).to_have_attribute("max", "8")
    expect(page.locator("#param-width")).to_be_visible()
    choose_workflow(page, "sd15-img2img")
    expect(page.locator("#image-box")).to_be_visible()
    expect(page.locator("#negative")).to_be_visible()
    expect(page.locator("#negative-hint")).to_have_text("What to keep out of the image")
    expect(page.locator("#param-denoise")).to_be_visible()
    expect(page.locator("#param-sampler option")).to_contain_text(["default (euler)", "ddim"])
    expect(page.locator("#param-width")).to_have_count(0)


def test_an_image_workflow_starts_from_an_uploaded_image(up: str, open_page: OpenPage) -> None:
    page = open_page(up)
    choose_workflow(page, "sd15-img2img")
    with page.expect_response("**/v1/uploads") as uploaded:
        page.set_input_files(
            "#image", files=[{"name": "cat.png", "mimeType": "image/png", "buffer": png()}]
        )
    upload = uploaded.value.json()
    assert uploaded.value.status == 201
    expect(page.locator("#image-preview")).to_be_visible()
    expect(page.locator("#drop-text")).to_have_text("cat.png, 64x48")
    generation = generate(page, "the same cat, as a watercolour")
    view = requests.get(f"{up}/v1/generations/{generation}", timeout=10).json()
    assert view["workflow"] == "sd15-img2img" and view["params"]["image"] == upload["key"]


def test_a_file_that_is_not_an_image_is_refused_in_a_sentence(up: str, open_page: OpenPage) -> None:
    page = open_page(up)
    choose_workflow(page, "sd15-img2img")
    page.set_input_files(
        "#image", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"hello"}]
    )
    expect(page.locator("#status")).to_have_text("That file is not a PNG, JPEG or WebP image.")
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#image-preview")).to_be_hidden()


def test_an_image_can_be_dropped_on_the_form(up: str, open_page: OpenPage) -> None:
    page = open_page(up)
    choose_workflow(page, "sd15-img2img")
    dropped = page.evaluate_handle(
        """data => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(png(80, 60)).decode(),
    )
    with page.expect_response("**/v1/uploads") as uploaded:
        page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    assert uploaded.value.status == 201
    expect(page.locator("#drop-text")).to_have_text("dropped.png, 80x60")
    generate(page, "a dropped image, repainted")
    expect(page.locator("#images img")).to_have_count(1)


def test_a_refusal_clears_the_old_image_and_the_progress_bar(up: str, open_page: OpenPage) -> None:
    page = open_page(up)
    generate(page)
    expect(page.locator("#images img")).to_have_count(1)
    choose_workflow(page, "sd15-img2img")  # no image given: the intake refuses
    page.click("#go")
    status = page.locator("#status")
    expect(status).to_have_class("error")
    expect(status).to_contain_text("image is required")
    expect(page.locator("#images img")).to_have_count(0)
    expect(page.locator("#bar-box")).to_be_hidden()


@pytest.mark.parametrize("size", SIZES)
def test_nothing_overflows_the_viewport(up: str, open_page: OpenPage, size: str) -> None:
    page = open_page(up, SIZES[size])
    assert_fits(page)
    choose_workflow(page, "sd15-img2img")  # the most fields
    page.click("#more summary")
    page.set_input_files(
        "#image", files=[{"name": "wide.png", "mimeType": "image/png", "buffer": png(900, 300)}]
    )
    expect(page.locator("#image-preview")).to_be_visible()
    generate(page, "a very long prompt " + "without_any_spaces_at_all" * 12)
    expect(page.locator("#gallery img").first).to_be_visible()
    assert_fits(page)


def test_the_api_reference_renders_with_no_network(up: str, open_page: OpenPage) -> None:
    outside: list[str] = []

    def local_only(route: Route) -> None:
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page = open_page("about:blank", WIDE)
    page.route("**/*", local_only)
    page.goto(f"{up}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("stillhouse")
    expect(page.locator(".opblock-summary-path", has_text="/v1/uploads")).to_be_visible()
    assert not outside, outside
