"""Vary Region through the web app: a signed link opens the mask editor for one Discord
result; its submission becomes an inpaint job of the source's model family, queued as
the Discord user in the channel the button was pressed in (the bot answers there), with
every check the intake makes. Bad links, empty or wrong masks and limits are refused
with a sentence; a double click makes one job."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from api.app import make_app
from stillhouse.config import make_settings
from stillhouse.edit_links import edit_link
from stillhouse.filters import ContentFilter, FilterFile
from stillhouse.inputs import UploadBy, key_origin, owner_tag
from stillhouse.intake import GenerationRequest, Requester
from stillhouse.queue.records import JobRecord
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services
from tests.bot.conftest import empty_moderation, make_services
from tests.bot.harness import CHANNEL, GUILD, OTHER_USER, USER, finish

SECRET = "vary-region-test-secret-0123456789abcdef"
EDIT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edit_workflows"
SHARD = 1
SIZE = (64, 48)  # what tests.bot.harness.finish stores
PAINTED = (8, 8, 24, 20)
# The source workflows' own checkpoints, not the inpaint ones': carried from the source.
CHECKPOINTS = {
    "sd15": "dreamshaper_8.safetensors",
    "sdxl": "juggernaut_xl.safetensors",
}  # left, top, right, bottom of the painted box


@pytest.fixture
def edit_services(engine: Engine, database_url: str, tmp_path: Path) -> Services:
    """Services with Vary Region on and the test workflows (each backend in turn)."""
    empty_moderation(engine)
    settings = make_settings(
        database={"url": database_url},
        data_dir=tmp_path / "data",
        intake={"per_minute": 4, "max_active_jobs": 5},
        api={"edit_link_secret": SECRET, "public_url": "http://testserver"},
        storage={"public_base_url": "http://testserver/files"},
        workflows={"dir": str(EDIT_FIXTURES)},
    )
    services = make_services(engine, settings)
    # The deployment's words for age-restricted channels (make_services leaves them out).
    adult = ContentFilter(FilterFile(words=settings.safety.nsfw_list()))
    return dataclasses.replace(services, nsfw_filter=adult)


@pytest.fixture
def web(edit_services: Services) -> Iterator[TestClient]:
    with TestClient(make_app(edit_services)) as test:
        yield test


def made_image(
    services: Services,
    workflow: str = "edit-source-sd15",
    *,
    user: int = USER,
    visibility: Literal["public", "spoiler", "private"] = "public",
) -> JobRecord:
    """A finished /serve of `user` in CHANNEL: its job, with one stored image."""
    values: dict[str, Any] = {
        "prompt": "a cat on a sofa",
        "negative_prompt": "fog",
    }
    bound = services.intake.prepare(GenerationRequest(workflow=workflow, values=values))
    requester = Requester(
        source="discord",
        user_id=user,
        guild_id=GUILD,
        channel_id=CHANNEL,
        shard_id=SHARD,
        visibility=visibility,
    )
    public_id = services.intake.submit(bound, requester).enqueued.job.public_id
    finish(services, public_id)
    job = services.queue.get(public_id)
    assert job is not None
    return job


def path_of(services: Services, job: JobRecord, *, user: int = USER, **options: Any) -> str:
    url = edit_link(services.settings, job.public_id, 0, user, GUILD, CHANNEL, SHARD, **options)
    assert url is not None and url.startswith("http://testserver/edit/")
    return url.removeprefix("http://testserver")


def mask_png(
    box: tuple[int, int, int, int] | None = PAINTED, size: tuple[int, int] = SIZE
) -> bytes:
    """What the editor sends: black, white where painted (soft edges included)."""
    image = Image.new("RGB", size, "black")
    if box is not None:
        image.paste((255, 255, 255), box)
        _, top, right, bottom = box
        image.paste((90, 90, 90), (right, top, right + 1, bottom))  # antialiasing, unpainted
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def submit(web: TestClient, path: str, mask: bytes, prompt: str = "a red hat") -> Any:
    return web.post(path, data={"prompt": prompt}, files={"mask": ("mask.png", mask, "image/png")})


def inpaint_jobs(services: Services, user: int = USER) -> list[JobRecord]:
    return [
        j
        for j in services.queue.of_user("discord", user, 50)
        if j.workflow_name.startswith("edit-inpaint-")
    ]


def stored_uploads(services: Services) -> list[Path]:
    return sorted((services.settings.images_dir() / "stillhouse" / "uploads").rglob("*.png"))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_submission_queues_an_inpaint_job_of_the_sources_family_answered_in_the_channel(
    web: TestClient, edit_services: Services, family: str
) -> None:
    source = made_image(edit_services, f"edit-source-{family}")
    answer = submit(web, path_of(edit_services, source), mask_png())
    assert answer.status_code == 202, answer.text
    assert answer.json()["message"] == "Sent: the result will appear in Discord."
    job = edit_services.queue.get(answer.json()["id"])
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.workflow_name == f"edit-inpaint-{family}"
    routing = job.routing
    assert (routing.source, routing.user_id) == ("discord", USER)
    assert (routing.guild_id, routing.channel_id, routing.shard_id) == (GUILD, CHANNEL, SHARD)
    assert routing.interaction_token is None, "the bot posts it in the channel, with a mention"
    params = job.params.root
    assert source.result is not None and params["image"] == source.result.images[0].key
    assert params["prompt"] == "a red hat"
    assert params["model"] == source.params.root["model"] == CHECKPOINTS[family]
    inpaint = edit_services.catalog.get(job.workflow_name).manifest
    assert inpaint.parameters["model"].default != CHECKPOINTS[family], "not its own default"
    assert params["negative_prompt"] == "fog"
    mask_key = str(params["mask"])
    assert key_origin(mask_key, "stillhouse/") == UploadBy(owner_tag(USER))
    assert {i.storage_key for i in job.inputs} == {params["image"], mask_key}
    with Image.open(io.BytesIO(edit_services.storage.get(mask_key))) as stored:
        assert stored.mode == "L" and stored.size == SIZE
        left, top, right, bottom = PAINTED
        assert stored.getbbox() == PAINTED, "white where painted and nowhere else"
        assert stored.crop(PAINTED).getextrema() == (255, 255)
        assert stored.getpixel((right, top)) == 0 and stored.getpixel((left - 1, bottom)) == 0


def test_a_double_click_makes_one_job(web: TestClient, edit_services: Services) -> None:
    path = path_of(edit_services, made_image(edit_services))
    first, second = submit(web, path, mask_png()), submit(web, path, mask_png())
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["message"] == "Already sent: the result will appear in Discord."
    assert len(inpaint_jobs(edit_services)) == 1
    other = submit(web, path, mask_png(), prompt="a blue hat")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


def test_the_editor_page_its_source_and_image_open_with_the_link(
    web: TestClient, edit_services: Services
) -> None:
    source = made_image(edit_services)
    path = path_of(edit_services, source)
    page = web.get(path)
    assert page.status_code == 200 and "Vary Region" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    for asset in ("/static/edit.js", "/static/edit.css"):
        assert web.get(asset).status_code == 200
    shown = web.get(f"{path}/source").json()
    assert shown["prompt"] == "a cat on a sofa" and (shown["width"], shown["height"]) == SIZE
    assert shown["workflow"] == "Test inpaint sd15" and shown["job"] == source.public_id
    assert source.result is not None
    image = web.get(f"{path}/image")
    assert image.status_code == 200
    assert image.content == edit_services.storage.get(source.result.images[0].key)
    assert web.get("/openapi.json").json()["paths"].keys().isdisjoint({path, "/edit/{token}"})


def test_an_expired_link_is_refused_with_a_sentence(
    web: TestClient, edit_services: Services
) -> None:
    source = made_image(edit_services)
    path = path_of(edit_services, source, now=0)  # made in 1970: long expired
    for answer in (web.get(f"{path}/source"), submit(web, path, mask_png())):
        assert answer.status_code == 410
        assert answer.json() == {
            "detail": "This link has expired: press Vary Region under the image in Discord "
            "for a new one."
        }
    assert inpaint_jobs(edit_services) == [] and stored_uploads(edit_services) == []


def test_a_tampered_link_or_one_for_someone_elses_image_is_refused(
    web: TestClient, edit_services: Services
) -> None:
    source = made_image(edit_services)
    path = path_of(edit_services, source)
    tampered = submit(web, path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"), mask_png())
    assert tampered.status_code == 403 and "not valid" in tampered.json()["detail"]
    theirs = submit(web, path_of(edit_services, source, user=OTHER_USER), mask_png())
    assert theirs.status_code == 403
    assert theirs.json()["detail"] == "Only the person who made this image can vary a region of it."
    assert inpaint_jobs(edit_services) == [] and inpaint_jobs(edit_services, OTHER_USER) == []


@pytest.mark.parametrize(
    ("mask", "says"),
    [
        (mask_png(None), "Paint over the part to change first: the region is empty."),
        (mask_png(size=(48, 64)), "The mask is 48x64; it must be the image's size, 64x48."),
        (b"not a png at all", "The mask must be a PNG image."),
    ],
    ids=["empty", "wrong-size", "not-an-image"],
)
def test_a_mask_that_marks_no_region_of_this_image_is_refused(
    web: TestClient, edit_services: Services, mask: bytes, says: str
) -> None:
    path = path_of(edit_services, made_image(edit_services))
    answer = submit(web, path, mask)
    assert answer.status_code == 422 and answer.json() == {"detail": says}
    assert inpaint_jobs(edit_services) == [] and stored_uploads(edit_services) == []


def test_a_submission_over_the_users_limits_is_refused_and_leaves_no_mask(
    web: TestClient, edit_services: Services
) -> None:
    path = path_of(edit_services, made_image(edit_services))  # 1 of 4 this minute
    for n in range(3):
        assert submit(web, path, mask_png(), prompt=f"hat {n}").status_code == 202
    kept = stored_uploads(edit_services)
    refused = submit(web, path, mask_png(), prompt="one too many")
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("You are going fast: at most 4 requests a minute.")
    assert stored_uploads(edit_services) == kept and len(kept) == 3


def test_a_banned_user_and_adult_words_outside_age_restricted_channels_are_refused(
    web: TestClient, edit_services: Services
) -> None:
    source = made_image(edit_services)
    adult = submit(web, path_of(edit_services, source), mask_png(), prompt="a nude statue")
    assert adult.status_code == 422 and "age-restricted" in adult.json()["detail"]
    allowed = path_of(edit_services, source, age_restricted=True)
    assert submit(web, allowed, mask_png(), prompt="a nude statue").status_code == 202
    edit_services.moderation.ban(USER, "spam", None)
    banned = submit(web, path_of(edit_services, source), mask_png())
    assert banned.status_code == 403
    assert banned.json()["detail"] == "You cannot make requests here."


def test_a_private_result_is_not_offered(web: TestClient, edit_services: Services) -> None:
    path = path_of(edit_services, made_image(edit_services, visibility="private"))
    answer = web.get(f"{path}/source")
    assert answer.status_code == 409 and "private" in answer.json()["detail"]


def test_with_vary_region_off_a_link_opens_nothing(
    engine: Engine, database_url: str, tmp_path: Path, edit_services: Services
) -> None:
    path = path_of(edit_services, made_image(edit_services))
    off = edit_services.settings.model_copy(
        update={"api": edit_services.settings.api.model_copy(update={"edit_link_secret": None})}
    )
    assert edit_link(off, "AbCdEfGhIjKlMnOp", 0, USER, GUILD, CHANNEL, SHARD) is None
    with TestClient(make_app(make_services(engine, off))) as web_off:
        answer = submit(web_off, path, mask_png())
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Vary Region is not switched on here."}
