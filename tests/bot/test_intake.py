"""What /serve and the buttons accept, refuse and queue, without Discord: every refusal
is a sentence for the user and nothing reaches the queue."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pymysql
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from stillhouse.config import QueueSettings
from stillhouse.intake import Attachment, GenerationRequest, Refusal, Requester
from stillhouse.moderation import INTAKE_PAUSED
from stillhouse.queue import GenerationQueue
from stillhouse.queue.records import Enqueued
from stillhouse.schemas.jobs import NewJob
from stillhouse.schemas.manifest import ParamValue
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services
from tests.bot.conftest import GUILD_WITH_OWN_RULES

GUILD = 1001


def request(prompt: str = "a lighthouse at dawn", **values: ParamValue) -> GenerationRequest:
    return GenerationRequest(workflow="sd15-txt2img", values={"prompt": prompt, **values})


def requester(interaction_id: int = 1, user_id: int = 42) -> Requester:
    return Requester(
        source="discord",
        user_id=user_id,
        guild_id=GUILD,
        channel_id=7,
        shard_id=0,
        request_id=interaction_id,
        reply_token=SecretStr("token-" + str(interaction_id)),
        reply_token_expires_at=datetime.now(UTC) + timedelta(minutes=14),
    )


def queued_jobs(services: Services) -> int:
    return services.queue.counts().get(JobStatus.QUEUED, 0)


def test_a_good_request_is_queued_once_per_interaction(services: Services) -> None:
    intake = services.intake
    bound = intake.prepare(request(count=2, seed=7), GUILD)
    first = intake.enqueue(bound, requester(interaction_id=555))
    again = intake.enqueue(bound, requester(interaction_id=555))  # a replica of the shard
    assert first.enqueued.created and not again.enqueued.created
    assert again.enqueued.job.public_id == first.enqueued.job.public_id
    assert queued_jobs(services) == 1
    job = first.enqueued.job
    assert job.params.root["seed"] == 7 and job.graph.root["5"].inputs["batch_size"] == 2
    assert job.routing.interaction_expires_at is not None
    assert first.position.ahead == 0


@pytest.mark.parametrize(
    ("req", "guild", "says"),
    [
        (
            GenerationRequest(workflow="nope", values={"prompt": "x"}),
            GUILD,
            "No workflow named .nope.",
        ),
        (request("lots of GORE here"), GUILD, "“gore”"),
        (request("full-width \uff47\uff4f\uff52\uff45"), GUILD, "“gore”"),
        (request("this is nsfw"), GUILD, "“nsfw”"),
        (request("no spoilers please"), GUILD_WITH_OWN_RULES, "“spoilers”"),
        (request("x" * 6000), GUILD, "6000 characters long; the limit is 1000"),
        (request(count=9), GUILD, "count is 9; the maximum is 4"),
        (request(steps=0), GUILD, "steps is 0; the minimum is 1"),
        (request(seed=-1), GUILD, "seed is -1; the minimum is 0"),
        (request(""), GUILD, "prompt is required"),
        (
            GenerationRequest(workflow="upscale-2x", values={"image": "stillhouse/a/b.png"}),
            GUILD,
            "not a workflow for this",
        ),
    ],
)
def test_bad_requests_are_refused_before_anything_is_queued(
    services: Services, req: GenerationRequest, guild: int, says: str
) -> None:
    with pytest.raises(Refusal, match=says):
        services.intake.prepare(req, guild)
    assert queued_jobs(services) == 0


def test_a_word_one_guild_filters_is_fine_elsewhere(services: Services) -> None:
    services.intake.prepare(request("no spoilers please"), GUILD)


@pytest.mark.parametrize(
    ("attachment", "says"),
    [
        (
            Attachment(
                filename="a.txt",
                url="https://cdn.discordapp.com/a.txt",
                size=10,
                content_type="text/plain",
            ),
            "attach a PNG, JPEG or WebP",
        ),
        (
            Attachment(
                filename="a.png",
                url="https://cdn.discordapp.com/a.png",
                size=50 * 2**20,
                content_type="image/png",
            ),
            "50.0 MiB; the limit is 10 MiB",
        ),
        (
            Attachment(
                filename="a.png",
                url="https://cdn.discordapp.com/a.png",
                size=1000,
                content_type="image/png",
                width=20000,
                height=20000,
            ),
            "too large",
        ),
    ],
)
def test_attachments_that_are_not_usable_images_are_refused(
    services: Services, attachment: Attachment, says: str
) -> None:
    req = GenerationRequest(workflow="sd15-img2img", values={"prompt": "a boat"}, image=attachment)
    with pytest.raises(Refusal, match=says):
        services.intake.prepare(req, GUILD)


def test_an_image_for_a_workflow_without_one_is_refused(services: Services) -> None:
    image = Attachment(
        filename="a.png",
        url="https://cdn.discordapp.com/a.png",
        size=1000,
        content_type="image/png",
    )
    req = GenerationRequest(workflow="sd15-txt2img", values={"prompt": "x"}, image=image)
    with pytest.raises(Refusal, match="does not take an image"):
        services.intake.prepare(req, GUILD)


def test_an_attached_image_binds_to_the_workflows_image_input(services: Services) -> None:
    image = Attachment(
        filename="a.png",
        url="https://cdn.discordapp.com/a.png",
        size=1000,
        content_type="image/png",
    )
    req = GenerationRequest(workflow="sd15-img2img", values={"prompt": "a boat"}, image=image)
    bound = services.intake.prepare(req, GUILD)
    [source] = bound.inputs
    assert str(source.url) == "https://cdn.discordapp.com/a.png"


def test_paused_intake_refuses_with_the_operators_note(services: Services) -> None:
    services.moderation.set_switch(INTAKE_PAUSED, True, "maintenance until 14:00")
    with pytest.raises(Refusal, match=r"paused for now \(maintenance until 14:00\)"):
        services.intake.admit(42)
    services.moderation.set_switch(INTAKE_PAUSED, False)
    services.intake.admit(42)


def test_a_banned_user_is_refused_until_unbanned(services: Services) -> None:
    services.moderation.ban(42, "spam", banned_by=1)
    with pytest.raises(Refusal, match="cannot make requests"):
        services.intake.admit(42)
    services.intake.admit(43)
    assert services.moderation.unban(42)
    services.intake.admit(42)


def test_the_per_minute_rate_is_counted_per_user(services: Services) -> None:
    intake = services.intake
    for _ in range(5):
        intake.admit(42)
    with pytest.raises(Refusal, match="at most 5 requests a minute"):
        intake.admit(42)
    intake.admit(43)


def test_a_user_with_too_many_unfinished_jobs_must_wait(services: Services) -> None:
    intake = services.intake
    bound = intake.prepare(request(), GUILD)
    for n in range(3):
        intake.enqueue(bound, requester(interaction_id=100 + n))
    with pytest.raises(Refusal, match="already have 3 requests waiting or running"):
        intake.admit(42)
    intake.admit(43)


def test_a_users_own_quota_overrides_the_default(services: Services) -> None:
    intake = services.intake
    services.moderation.set_quota(42, 1, set_by=1)
    intake.admit(42)
    intake.enqueue(intake.prepare(request(), GUILD), requester(interaction_id=200))
    with pytest.raises(Refusal, match="used your 1 requests"):
        intake.admit(42)
    assert services.moderation.clear_quota(42)
    intake.admit(42)


class LostAcknowledgement(GenerationQueue):
    """The database commits the insert, then the connection drops before the client
    hears so (a server killed mid-commit)."""

    def __init__(self, engine: Engine, settings: QueueSettings) -> None:
        super().__init__(engine, settings)
        self.dropped = 0

    def enqueue(self, job: NewJob) -> Enqueued:
        enqueued = super().enqueue(job)
        if not self.dropped:
            self.dropped += 1
            lost = pymysql.err.OperationalError(2013, "Lost connection to MySQL server")
            raise OperationalError("INSERT INTO generation_queue", {}, lost)
        return enqueued


def test_a_commit_whose_answer_was_lost_is_found_not_failed_nor_doubled(
    services: Services,
) -> None:
    queue = LostAcknowledgement(services.engine, services.settings.queue)
    intake = dataclasses.replace(services, queue=queue).intake
    accepted = intake.enqueue(intake.prepare(request(), GUILD), requester(interaction_id=777))
    assert queue.dropped == 1
    assert accepted.enqueued.created, "it is this request's job, not another replica's"
    assert queued_jobs(services) == 1
