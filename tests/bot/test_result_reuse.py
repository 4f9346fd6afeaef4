"""The result cache: a request identical to an earlier success (same workflow, bound graph
with a fixed seed, stored inputs) is answered with its images, marked as such, without a
GPU; anything that could change the images is made afresh."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from stillhouse.ids import new_owner
from stillhouse.intake import Accepted, Attachment, GenerationRequest, Refusal, Requester
from stillhouse.queue.statements import JOBS
from stillhouse.schemas.jobs import ResultPayload
from stillhouse.schemas.manifest import ParamValue, Purpose
from stillhouse.schemas.states import DeliveryStatus, JobStatus
from stillhouse.schemas.worker_io import ErrorInfo
from stillhouse.services import Services
from tests.bot.harness import (
    CHANNEL,
    GUILD,
    OTHER_USER,
    USER,
    finish,
    image_gone,
    queued_id,
    running_bot,
    stored_result,
    wait_answer,
)
from tests.doubles.discord import DiscordEmulator
from tests.support import wait_until

INTERACTIONS = itertools.count(70_000)


def ask(
    services: Services,
    user_id: int = 42,
    workflow: str = "sd15-txt2img",
    image: Attachment | None = None,
    **values: ParamValue,
) -> Accepted:
    values = {"prompt": "a lighthouse at dawn", "seed": 7, **values}
    request = GenerationRequest(workflow=workflow, values=values, image=image)
    bound = services.intake.prepare(request, GUILD)
    return services.intake.submit(bound, requester(user_id))


def requester(user_id: int) -> Requester:
    return Requester(
        source="discord",
        user_id=user_id,
        guild_id=GUILD,
        channel_id=CHANNEL,
        shard_id=0,
        request_id=next(INTERACTIONS),
        reply_token=SecretStr("token"),
        reply_token_expires_at=datetime.now(UTC) + timedelta(minutes=14),
    )


def made(services: Services, **values: ParamValue) -> tuple[str, list[str]]:
    """A request run by a stand-in master: its public id and image keys."""
    accepted = ask(services, **values)
    public_id = accepted.enqueued.job.public_id
    owner = new_owner("test-master")
    [job] = [j for j in services.queue.claim(owner, 10) if j.public_id == public_id]
    result, stored = stored_result(services.storage, public_id, images=2)
    services.queue.complete(job, result)
    return public_id, [key for key, _ in stored]


def test_an_identical_request_is_answered_with_the_earlier_images_and_marked(
    services: Services,
) -> None:
    original, keys = made(services)
    again = ask(services, user_id=43)
    job = again.enqueued.job
    assert again.enqueued.created and job.status is JobStatus.SUCCEEDED
    assert job.reused_from == original and job.dispatched_at is None and job.attempts == 0
    assert job.result is not None and [i.key for i in job.result.images] == keys
    assert services.queue.counts().get(JobStatus.QUEUED, 0) == 0, "no GPU asked"
    [row] = services.sends.for_job(job.id)
    assert row.status is DeliveryStatus.PENDING and isinstance(row.payload, ResultPayload)
    assert row.payload.reused_from == original
    # A reuse of a reuse names the job that made the images.
    third = ask(services, user_id=44).enqueued.job
    assert third.reused_from == original


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 8},
        {"prompt": "a lighthouse at dusk"},
        {"steps": 21},
        {"count": 2},
        {"workflow": "sdxl-txt2img"},
    ],
    ids=["seed", "prompt", "steps", "count", "workflow"],
)
def test_a_request_that_differs_in_anything_that_shapes_the_images_runs_on_a_gpu(
    services: Services, change: dict[str, ParamValue]
) -> None:
    made(services)
    other = ask(services, **change)  # type: ignore[arg-type]
    assert other.enqueued.job.status is JobStatus.QUEUED and other.enqueued.job.reused_from is None


def test_a_request_without_a_seed_is_never_reused(services: Services) -> None:
    request = GenerationRequest(workflow="sd15-txt2img", values={"prompt": "a lighthouse"})
    bound = [services.intake.prepare(request, GUILD) for _ in range(2)]
    assert bound[0].graph != bound[1].graph, "each draws its own seed"


def test_only_a_success_is_reused_and_only_within_the_window(services: Services) -> None:
    first = ask(services).enqueued.job
    assert ask(services).enqueued.job.status is JobStatus.QUEUED, "still queued: not reused"
    [job] = [j for j in services.queue.claim(new_owner("m"), 10) if j.id == first.id]
    services.queue.fail(job, ErrorInfo(type="comfy_error", message="boom", retryable=False))
    assert ask(services).enqueued.job.status is JobStatus.QUEUED, "a failure is not reused"

    original, _ = made(services, seed=99)
    window = services.settings.intake.reuse_results_s
    with services.engine.begin() as conn:
        old = datetime.now(UTC) - timedelta(seconds=window + 60)
        conn.execute(update(JOBS).where(JOBS.c.public_id == original).values(finished_at=old))
    assert ask(services, seed=99).enqueued.job.status is JobStatus.QUEUED


def test_reuse_can_be_turned_off(services: Services) -> None:
    made(services)
    intake = services.intake
    intake.settings = intake.settings.model_copy(update={"reuse_results_s": 0})
    assert ask(services).enqueued.job.status is JobStatus.QUEUED


def test_an_image_fetched_from_a_url_is_never_reused(services: Services) -> None:
    image = Attachment(
        filename="a.png",
        url="https://cdn.discordapp.com/attachments/1/2/a.png",
        size=1000,
        content_type="image/png",
        width=64,
        height=64,
    )
    first = ask(services, workflow="sd15-img2img", image=image).enqueued.job
    assert first.reuse_key is None
    owner = new_owner("m")
    [job] = [j for j in services.queue.claim(owner, 10) if j.id == first.id]
    services.queue.complete(job, stored_result(services.storage, first.public_id)[0])
    again = ask(services, workflow="sd15-img2img", image=image).enqueued.job
    assert again.status is JobStatus.QUEUED


def test_reused_images_are_the_new_requesters_own_for_buttons(services: Services) -> None:
    _, keys = made(services, user_id=42)
    ask(services, user_id=43)  # answered with 42's images
    upscale = GenerationRequest(
        workflow="upscale-2x", values={"image": keys[0]}, purpose=Purpose.UPSCALE
    )
    bound = services.intake.prepare(upscale, GUILD)
    mine = services.intake.submit(bound, requester(43))
    assert [i.storage_key for i in mine.enqueued.job.inputs] == [keys[0]]
    with pytest.raises(Refusal, match="only use your own images"):
        services.intake.submit(bound, requester(45))


def test_a_reused_request_still_counts_toward_the_users_limits(services: Services) -> None:
    made(services, user_id=50)
    for _ in range(services.settings.intake.per_minute - 1):
        assert ask(services, user_id=50).enqueued.job.reused_from is not None
    with pytest.raises(Refusal, match="requests a minute"):
        ask(services, user_id=50)


def test_deleted_images_are_kept_while_shared_and_never_reused_after_the_last_delete(
    services: Services,
) -> None:
    original, keys = made(services, user_id=42)
    reused = ask(services, user_id=43).enqueued.job
    first = services.queue.get(original)
    assert first is not None
    assert not services.queue.release_images(first), "43 still has them"
    third = ask(services, user_id=44).enqueued.job
    assert third.reused_from == original, "43's copy is still offered"
    assert not services.queue.release_images(reused)
    assert services.queue.release_images(third), "the last one: the files may go"
    assert ask(services, user_id=46).enqueued.job.status is JobStatus.QUEUED
    services.storage.get(keys[0])  # the queue decides; deleting is the caller's


def test_a_second_serve_with_the_same_seed_gets_its_images_from_storage_in_discord(
    emu: DiscordEmulator, maria_services: Services
) -> None:
    with running_bot(maria_services, emu):
        options = {"prompt": "a lighthouse at dawn", "seed": 1234}
        first = emu.slash_command(GUILD, CHANNEL, USER, "serve", options=options)
        original = queued_id(first)
        stored = finish(maria_services, original)
        wait_answer(emu, first, original)

        again = emu.slash_command(GUILD, CHANNEL, OTHER_USER, "serve", options=options)
        public_id = queued_id(again)
        assert public_id != original
        acceptance = again.wait_response()["data"]["content"]
        assert f"asks for exactly what `{original}` made" in acceptance
        answer = wait_answer(emu, again, public_id)
        assert [a.data for a in answer.attachments] == [data for _, data in stored]
        assert f"The same request as `{original}`" in answer.content
        job = maria_services.queue.get(public_id)
        assert job is not None and job.dispatched_at is None and job.reused_from == original

        # Deleting the reused answer keeps the images: the first requester still has them.
        emu.click(answer, f"sh:d:{public_id}", OTHER_USER)
        wait_until(lambda: emu.message(answer.id).deleted, 5, what="the answer deleted")
        maria_services.storage.get(stored[0][0])
        first_answer = wait_answer(emu, first, original)
        emu.click(first_answer, f"sh:d:{original}", USER)
        wait_until(lambda: image_gone(maria_services, stored[0][0]), 5, what="the images deleted")


def test_a_repeated_answer_is_shown_from_the_bots_memory_without_reading_storage_again(
    emu: DiscordEmulator, maria_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = maria_services.storage
    reads: list[str] = []
    read = storage.get

    def counted(key: str) -> bytes:
        reads.append(key)
        return read(key)

    monkeypatch.setattr(storage, "get", counted)
    with running_bot(maria_services, emu):
        options = {"prompt": "a lighthouse at dusk", "seed": 4321}
        first = emu.slash_command(GUILD, CHANNEL, USER, "serve", options=options)
        original = queued_id(first)
        stored = finish(maria_services, original)
        wait_answer(emu, first, original)
        assert reads == [key for key, _ in stored], "the first answer read its images"

        again = emu.slash_command(GUILD, CHANNEL, OTHER_USER, "serve", options=options)
        answer = wait_answer(emu, again, queued_id(again))
        assert [a.data for a in answer.attachments] == [data for _, data in stored]
        assert reads == [key for key, _ in stored], "the repeat was read from storage again"
