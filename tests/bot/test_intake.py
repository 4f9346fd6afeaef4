"""What /serve and the buttons accept, refuse and queue, without Discord: every refusal
is a sentence for the user and nothing reaches the queue."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymysql
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from stillhouse.config import QueueSettings
from stillhouse.hints import JOBS
from stillhouse.ids import new_owner
from stillhouse.intake import Attachment, GenerationRequest, Refusal, Requester
from stillhouse.moderation import INTAKE_PAUSED
from stillhouse.queue import GenerationQueue
from stillhouse.queue.admission import Limits
from stillhouse.queue.records import Enqueued
from stillhouse.schemas.jobs import NewJob
from stillhouse.schemas.manifest import ParamValue, Purpose
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services
from tests.bot.conftest import GUILD_WITH_OWN_RULES
from tests.bot.harness import stored_result

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
    first = intake.submit(bound, requester(interaction_id=555))
    again = intake.submit(bound, requester(interaction_id=555))  # a replica of the shard
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


def test_an_image_goes_to_the_familys_image_workflow_or_is_refused_without_one(
    services: Services,
) -> None:
    image = Attachment(
        filename="a.png",
        url="https://cdn.discordapp.com/a.png",
        size=1000,
        content_type="image/png",
    )
    req = GenerationRequest(workflow="sd15-txt2img", values={"prompt": "x"}, image=image)
    assert services.intake.prepare(req, GUILD).workflow == "sd15-img2img"
    # Where the family has no image workflow, the picture is refused with a sentence.
    catalog = dataclasses.replace(services.intake.catalog)
    catalog.workflows = {k: v for k, v in catalog.workflows.items() if k != "sd15-img2img"}
    intake = dataclasses.replace(services.intake, catalog=catalog)
    with pytest.raises(Refusal, match="does not take an image"):
        intake.prepare(req, GUILD)


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


def submit(services: Services, user_id: int = 42, guild_id: int | None = GUILD) -> str:
    """One /serve from this user in this guild, queued: its job's public id."""
    who = requester(interaction_id=next(INTERACTIONS), user_id=user_id)
    who = who.model_copy(update={"guild_id": guild_id})
    accepted = services.intake.submit(services.intake.prepare(request(), guild_id), who)
    return accepted.enqueued.job.public_id


INTERACTIONS = itertools.count(10_000)


def test_paused_intake_refuses_with_the_operators_note(services: Services) -> None:
    services.moderation.set_switch(INTAKE_PAUSED, True, "maintenance until 14:00")
    with pytest.raises(Refusal, match=r"paused for now \(maintenance until 14:00\)"):
        submit(services)
    services.moderation.set_switch(INTAKE_PAUSED, False)
    submit(services)


def test_a_guilds_pause_refuses_there_only(services: Services) -> None:
    services.moderation.set_switch(INTAKE_PAUSED, True, "art contest", guild_id=GUILD)
    with pytest.raises(Refusal, match=r"paused here for now \(art contest\)"):
        submit(services)
    submit(services, guild_id=GUILD + 1)
    submit(services, guild_id=None)  # a direct message or the API: not that guild
    services.moderation.set_switch(INTAKE_PAUSED, False, guild_id=GUILD)
    submit(services)


def test_with_both_paused_the_deployment_wide_note_is_the_one_read(services: Services) -> None:
    services.moderation.set_switch(INTAKE_PAUSED, True, "art contest", guild_id=GUILD)
    services.moderation.set_switch(INTAKE_PAUSED, True, "upgrade")
    with pytest.raises(Refusal, match=r"paused for now \(upgrade\)"):
        submit(services)
    services.moderation.set_switch(INTAKE_PAUSED, False)
    with pytest.raises(Refusal, match=r"paused here for now \(art contest\)"):
        submit(services)


def test_a_request_made_before_a_pause_or_ban_is_answered_as_made(services: Services) -> None:
    bound = services.intake.prepare(request(), GUILD)
    first = services.intake.submit(bound, requester(interaction_id=901))
    services.moderation.set_switch(INTAKE_PAUSED, True, "upgrade")
    services.moderation.ban(42, "spam", banned_by=1, guild_id=GUILD)
    again = services.intake.submit(bound, requester(interaction_id=901))
    assert not again.enqueued.created
    assert again.enqueued.job.public_id == first.enqueued.job.public_id
    with pytest.raises(Refusal, match="paused"):
        services.intake.submit(bound, requester(interaction_id=902))


def test_a_banned_user_is_refused_until_unbanned(services: Services) -> None:
    services.moderation.ban(42, "spam", banned_by=1)
    with pytest.raises(Refusal, match="cannot make requests"):
        submit(services)
    submit(services, user_id=43)
    assert services.moderation.unban(42)
    submit(services)


def test_a_guilds_ban_keeps_the_user_out_of_that_guild_only(services: Services) -> None:
    services.moderation.ban(42, "spam", banned_by=1, guild_id=GUILD)
    with pytest.raises(Refusal, match="cannot make requests"):
        submit(services)
    submit(services, guild_id=GUILD + 1)
    assert not services.moderation.unban(42), "no deployment-wide ban to lift"
    assert services.moderation.unban(42, guild_id=GUILD)
    submit(services)


def test_the_per_minute_rate_is_counted_per_user(services: Services) -> None:
    for _ in range(3):
        services.queue.cancel(submit(services))  # finished: only the rate counts them
    submit(services)
    submit(services)
    with pytest.raises(Refusal, match=r"at most 5 requests a minute\. Try again in \d+ s"):
        submit(services)
    submit(services, user_id=43)


def test_a_user_with_too_many_unfinished_jobs_must_wait(services: Services) -> None:
    for _ in range(3):
        submit(services)
    with pytest.raises(Refusal, match="already have 3 requests waiting or running"):
        submit(services)
    submit(services, user_id=43)


def test_a_users_own_quota_overrides_the_default(services: Services) -> None:
    services.moderation.set_quota(42, 1, set_by=1)
    submit(services)
    with pytest.raises(Refusal, match="used your 1 requests"):
        submit(services)
    assert services.moderation.clear_quota(42)
    submit(services)


def test_a_repeated_request_is_answered_even_at_the_limit(services: Services) -> None:
    bound = services.intake.prepare(request(), GUILD)
    first = services.intake.submit(bound, requester(interaction_id=900))
    for _ in range(2):
        submit(services)
    again = services.intake.submit(bound, requester(interaction_id=900))
    assert not again.enqueued.created
    assert again.enqueued.job.public_id == first.enqueued.job.public_id


class LostAcknowledgement(GenerationQueue):
    """The database commits the insert, then the connection drops before the client
    hears so (a server killed mid-commit)."""

    def __init__(self, engine: Engine, settings: QueueSettings) -> None:
        super().__init__(engine, settings)
        self.dropped = 0

    def enqueue(
        self,
        job: NewJob,
        *,
        limits: Limits | None = None,
        digest: str | None = None,
        reuse_within_s: int = 0,
        queued: Callable[[], None] = lambda: None,
    ) -> Enqueued:
        # The dropped answer is lost before anything after the commit runs.
        heard = queued if self.dropped else (lambda: None)
        enqueued = super().enqueue(
            job, limits=limits, digest=digest, reuse_within_s=reuse_within_s, queued=heard
        )
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
    woken = services.hints.version(JOBS)
    accepted = intake.submit(intake.prepare(request(), GUILD), requester(interaction_id=777))
    assert queue.dropped == 1
    assert accepted.enqueued.created, "it is this request's job, not another replica's"
    assert queued_jobs(services) == 1
    assert services.hints.version(JOBS) != woken, "the masters hear of it all the same"


def finished_result_key(services: Services, user_id: int) -> str:
    """A job of this user's, done by a stand-in master: the key of its image."""
    public_id = submit(services, user_id=user_id)
    [job] = services.queue.claim(new_owner("test-master"), 1)
    assert job.public_id == public_id
    result, [(key, _)] = stored_result(services.storage, public_id)
    services.queue.complete(job, result)
    return key


def upscale(key: str) -> GenerationRequest:
    return GenerationRequest(workflow="upscale-2x", values={"image": key}, purpose=Purpose.UPSCALE)


def test_a_button_may_start_from_the_users_own_result_only(services: Services) -> None:
    key = finished_result_key(services, user_id=42)
    bound = services.intake.prepare(upscale(key), GUILD)
    mine = services.intake.submit(bound, requester(interaction_id=next(INTERACTIONS)))
    assert [i.storage_key for i in mine.enqueued.job.inputs] == [key]
    stranger = requester(interaction_id=next(INTERACTIONS), user_id=43)
    with pytest.raises(Refusal, match="only use your own images") as refused:
        services.intake.submit(bound, stranger)
    assert refused.value.kind == "forbidden"


def test_an_attachment_from_a_host_the_workers_refuse_is_refused_with_their_sentence(
    services: Services,
) -> None:
    image = Attachment(
        filename="a.png", url="https://evil.example/a.png", size=1000, content_type="image/png"
    )
    req = GenerationRequest(workflow="sd15-img2img", values={"prompt": "a boat"}, image=image)
    with pytest.raises(Refusal, match=r"^input images may not come from evil\.example$"):
        services.intake.prepare(req, GUILD)
