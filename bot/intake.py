"""From a request to a queued job: every check /serve and the buttons make, without
Discord. Each check that fails raises Refusal with the sentence the user will read.

The order matters: checks that need nothing but the request (workflow, values, filter,
attachment) come first and cost nothing; then what needs the database or memcached
(paused intake, ban, rate, concurrency, quota); then the one write, which is idempotent
on the interaction id, so two replicas of one shard make one job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydantic import BaseModel, SecretStr

from bot.services import Services
from stillhouse.errors import StillhouseError
from stillhouse.moderation import INTAKE_PAUSED
from stillhouse.queue.records import Enqueued, QueuePosition
from stillhouse.schemas.jobs import NewJob, Routing
from stillhouse.schemas.manifest import ParamValue, Purpose
from stillhouse.workflows.binder import BoundWorkflow, ParameterError, bind
from stillhouse.workflows.loader import UnknownWorkflow, Workflow

log = logging.getLogger(__name__)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
PROMPT_FIELDS = ("prompt", "negative_prompt")


class Refusal(StillhouseError):
    """A request we will not queue; the message is for the user."""


class Attachment(BaseModel):
    """What Discord tells us about an attached file."""

    filename: str
    url: str
    size: int
    content_type: str | None = None
    width: int | None = None
    height: int | None = None


class Requester(BaseModel):
    """Who asks, where the answer goes, and the interaction that carries it."""

    user_id: int
    guild_id: int | None
    channel_id: int | None
    shard_id: int
    interaction_id: int
    interaction_token: SecretStr
    interaction_created_at: datetime


class GenerationRequest(BaseModel):
    """A workflow and the values a user set for it."""

    workflow: str
    values: dict[str, ParamValue] = {}
    preset: str | None = None
    aspect: str | None = None
    image: Attachment | None = None
    purpose: Purpose = Purpose.GENERATE


class Accepted(BaseModel):
    """The job a request became, and where it stands."""

    enqueued: Enqueued
    position: QueuePosition
    bound: BoundWorkflow


class Intake:
    """Checks a request and queues it."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def prepare(self, request: GenerationRequest, guild_id: int | None) -> BoundWorkflow:
        """The checks that need no database: a graph ready to queue, or Refusal."""
        workflow = self._workflow(request)
        values = dict(request.values)
        for name in PROMPT_FIELDS:
            text = values.get(name)
            if isinstance(text, str):
                matched = self._s.content_filter.violation(text, guild_id)
                if matched is not None:
                    raise Refusal(
                        f"Your {name.replace('_', ' ')} contains “{matched}”, "
                        "which this server does not allow."
                    )
        if request.image is not None:
            values[self._image_parameter(workflow)] = self._checked_image(request.image)
        try:
            return bind(workflow, values, preset=request.preset, aspect=request.aspect)
        except ParameterError as exc:
            raise Refusal(
                "That request does not fit the workflow: " + "; ".join(exc.problems)
            ) from None

    def admit(self, user_id: int) -> None:
        """The checks that need the database and memcached; Refusal if the user must wait."""
        paused = self._s.moderation.switch(INTAKE_PAUSED)
        if paused.enabled:
            why = f" ({paused.note})" if paused.note else ""
            raise Refusal(f"New requests are paused for now{why}. Please try again later.")
        ban = self._s.moderation.ban_of(user_id)
        if ban is not None:
            raise Refusal("You cannot make requests here.")
        bot = self._s.settings.bot
        hit = self._s.locks.hit(f"serve:{user_id}", bot.serve_per_minute, 60)
        if not hit.allowed:
            raise Refusal(
                f"You are going fast: at most {bot.serve_per_minute} requests a minute. "
                f"Try again in {max(1, round(hit.retry_after_s))} s."
            )
        active = self._s.insights.unfinished_count(user_id)
        if active >= bot.max_active_jobs:
            raise Refusal(
                f"You already have {active} requests waiting or running (the limit is "
                f"{bot.max_active_jobs}). Wait for one to finish or /cancel one."
            )
        # A user's own quota (0 included) wins; the default 0 means no daily limit.
        own = self._s.moderation.quota_of(user_id)
        limit = own if own is not None else (bot.daily_quota or None)
        if limit is not None:
            used = self._s.insights.created_since(user_id, self._s.clock() - timedelta(days=1))
            if used >= limit:
                raise Refusal(f"You have used your {limit} requests for the last 24 hours.")

    def enqueue(self, bound: BoundWorkflow, requester: Requester) -> Accepted:
        """Queue the job (once per interaction) and say where it stands."""
        lifetime = timedelta(seconds=self._s.settings.bot.token_lifetime_s)
        job = NewJob(
            routing=Routing(
                source="discord",
                user_id=requester.user_id,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                shard_id=requester.shard_id,
                interaction_token=requester.interaction_token,
                interaction_expires_at=requester.interaction_created_at + lifetime,
            ),
            interaction_id=requester.interaction_id,
            workflow_name=bound.workflow,
            workflow_version=bound.version,
            params=bound.params,
            graph=bound.graph,
            inputs=bound.inputs,
        )
        enqueued = self._s.queue.enqueue(job)
        position = self._s.queue.position(enqueued.job.public_id)
        log.info(
            "request queued" if enqueued.created else "request already queued",
            extra={
                "action": "bot.enqueue",
                "job": enqueued.job.public_id,
                "workflow": bound.workflow,
                "user": requester.user_id,
                "interaction": requester.interaction_id,
                "shard": requester.shard_id,
            },
        )
        return Accepted(enqueued=enqueued, position=position, bound=bound)

    def _workflow(self, request: GenerationRequest) -> Workflow:
        try:
            workflow = self._s.catalog.get(request.workflow)
        except UnknownWorkflow as exc:
            raise Refusal(str(exc).capitalize() + ". See /workflows.") from None
        if workflow.manifest.purpose is not request.purpose:
            raise Refusal(f"{workflow.name} is not a workflow for this. See /workflows.")
        return workflow

    def _image_parameter(self, workflow: Workflow) -> str:
        names = workflow.manifest.image_parameters()
        if not names:
            raise Refusal(
                f"{workflow.manifest.title} does not take an image; pick an image workflow "
                "(see /workflows) or leave the image out."
            )
        return names[0]

    def _checked_image(self, image: Attachment) -> str:
        limit = self._s.settings.bot.max_attachment_bytes
        if image.content_type not in IMAGE_TYPES:
            shown = image.content_type or "an unknown type"
            raise Refusal(f"{image.filename} is {shown}; attach a PNG, JPEG or WebP image.")
        if image.size > limit:
            raise Refusal(
                f"{image.filename} is {image.size / 2**20:.1f} MiB; the limit is "
                f"{limit / 2**20:.0f} MiB."
            )
        pixels = (image.width or 0) * (image.height or 0)
        if pixels > self._s.settings.worker.max_input_pixels:
            raise Refusal(f"{image.filename} is {image.width}x{image.height}; that is too large.")
        return image.url
