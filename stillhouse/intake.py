"""From a request to a queued job: every check a front (the bot, the API) makes before
anything is queued. Each check that fails raises Refusal with the sentence the user reads.

The order matters: checks that need nothing but the request (workflow, values, filter,
attachment) come first and cost nothing; then what needs the database or memcached
(paused intake, ban, rate, concurrency, quota); then the one write, which is idempotent
on the request id (a Discord interaction), so two replicas of one shard make one job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.exc import DBAPIError

from stillhouse.config import IntakeSettings, WorkerSettings
from stillhouse.db.engine import is_outage
from stillhouse.errors import StillhouseError
from stillhouse.filters import ContentFilter
from stillhouse.hints import JOBS, Hints, InProcessHints
from stillhouse.locks import LockService
from stillhouse.moderation import INTAKE_PAUSED, Moderation
from stillhouse.queue import GenerationQueue
from stillhouse.queue.insights import QueueInsights
from stillhouse.queue.records import Enqueued, QueuePosition
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.schemas.jobs import NewJob, Routing
from stillhouse.schemas.manifest import ParamValue, Purpose
from stillhouse.schemas.states import JobStatus
from stillhouse.workflows.binder import BoundWorkflow, ParameterError, bind
from stillhouse.workflows.loader import UnknownWorkflow, Workflow, WorkflowCatalog

log = logging.getLogger(__name__)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
PROMPT_FIELDS = ("prompt", "negative_prompt")
ENQUEUE_RETRY_S = 2.5  # within Discord's 3 s, or the deferred answer that follows it


RefusalKind = Literal["invalid", "paused", "banned", "limited"]


class Refusal(StillhouseError):
    """A request we will not queue; the message is for the user. `kind` says why, for
    fronts that answer with a status code: bad request, paused intake, banned, over a
    limit (rate, unfinished requests, quota)."""

    def __init__(self, message: str, kind: RefusalKind = "invalid") -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind


class Attachment(BaseModel):
    """An image a user attached, as Discord describes it; or (`by_url`) an image URL an
    API caller gave, whose type and size only the worker learns when it fetches it
    (within its own limits)."""

    filename: str
    url: str
    size: int = 0
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    by_url: bool = False


class Requester(BaseModel):
    """Who asks and where the answer goes."""

    source: Literal["discord", "api"]
    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    shard_id: int | None = None
    request_id: int | None = Field(default=None, description="dedupe: the interaction id")
    reply_token: SecretStr | None = None
    reply_token_expires_at: datetime | None = None


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


@dataclass
class Intake:
    """Checks requests and queues them."""

    settings: IntakeSettings
    worker: WorkerSettings
    catalog: WorkflowCatalog
    content_filter: ContentFilter
    moderation: Moderation
    insights: QueueInsights
    queue: GenerationQueue
    locks: LockService
    clock: Clock = utcnow
    hints: Hints = field(default_factory=InProcessHints)

    def prepare(self, request: GenerationRequest, guild_id: int | None = None) -> BoundWorkflow:
        """The checks that need no database: a graph ready to queue, or Refusal."""
        workflow = self._workflow(request)
        values = dict(request.values)
        for name in PROMPT_FIELDS:
            text = values.get(name)
            if isinstance(text, str):
                matched = self.content_filter.violation(text, guild_id)
                if matched is not None:
                    raise Refusal(
                        f"Your {name.replace('_', ' ')} contains “{matched}”, "
                        "which is not allowed here."
                    )
        if request.image is not None:
            values[self._image_parameter(workflow)] = self._checked_image(request.image)
        try:
            return bind(workflow, values, preset=request.preset, aspect=request.aspect)
        except ParameterError as exc:
            problems = "; ".join(exc.problems)
            raise Refusal(f"That request does not fit the workflow: {problems}") from None

    def admit(self, user_id: int) -> None:
        """The checks that need the database and memcached; Refusal if the user must wait."""
        paused = self.moderation.switch(INTAKE_PAUSED)
        if paused.enabled:
            why = f" ({paused.note})" if paused.note else ""
            raise Refusal(
                f"New requests are paused for now{why}. Please try again later.", "paused"
            )
        if self.moderation.ban_of(user_id) is not None:
            raise Refusal("You cannot make requests here.", "banned")
        limits = self.settings
        hit = self.locks.hit(f"requests:{user_id}", limits.per_minute, 60)
        if not hit.allowed:
            raise Refusal(
                f"You are going fast: at most {limits.per_minute} requests a minute. "
                f"Try again in {max(1, round(hit.retry_after_s))} s.",
                "limited",
            )
        active = self.insights.unfinished_count(user_id)
        if active >= limits.max_active_jobs:
            raise Refusal(
                f"You already have {active} requests waiting or running (the limit is "
                f"{limits.max_active_jobs}). Wait for one to finish or cancel one.",
                "limited",
            )
        # A user's own quota (0 included) wins; the default 0 means no daily limit.
        own = self.moderation.quota_of(user_id)
        limit = own if own is not None else (limits.daily_quota or None)
        if limit is not None:
            used = self.insights.created_since(user_id, self.clock() - timedelta(days=1))
            if used >= limit:
                raise Refusal(
                    f"You have used your {limit} requests for the last 24 hours.", "limited"
                )

    def enqueue(self, bound: BoundWorkflow, requester: Requester) -> Accepted:
        """Queue the job (once per request id) and say where it stands."""
        job = NewJob(
            routing=Routing(
                source=requester.source,
                user_id=requester.user_id,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                shard_id=requester.shard_id,
                interaction_token=requester.reply_token,
                interaction_expires_at=requester.reply_token_expires_at,
            ),
            interaction_id=requester.request_id,
            workflow_name=bound.workflow,
            workflow_version=bound.version,
            params=bound.params,
            graph=bound.graph,
            inputs=bound.inputs,
        )
        enqueued = self._enqueue(job)
        if enqueued.created:
            self.hints.bump(JOBS)  # a master claims it now, not at its next look
        try:
            position = self.queue.position(enqueued.job.public_id)
        except DBAPIError:  # it is queued; where it stands can be told later
            position = QueuePosition(status=JobStatus.QUEUED, ahead=None, estimated_wait_s=None)
        log.info(
            "request queued" if enqueued.created else "request already queued",
            extra={
                "action": "intake.enqueue",
                "job": enqueued.job.public_id,
                "workflow": bound.workflow,
                "source": requester.source,
                "user": requester.user_id,
                "interaction": requester.request_id,
                "shard": requester.shard_id,
            },
        )
        return Accepted(enqueued=enqueued, position=position, bound=bound)

    def _enqueue(self, job: NewJob) -> Enqueued:
        """Insert the job. A connection lost during the commit leaves its fate unknown:
        a request with an id is tried again (its unique id finds the job if the first
        try committed) for up to ENQUEUE_RETRY_S, so a database restart mid-request
        neither loses the job nor tells the user it failed when it did not."""
        retrying_until = time.monotonic() + ENQUEUE_RETRY_S
        delay, tried = 0.1, False
        while True:
            try:
                enqueued = self.queue.enqueue(job)
            except DBAPIError as exc:
                retry = job.interaction_id is not None and is_outage(exc)
                if not retry or time.monotonic() + delay > retrying_until:
                    raise
                tried = True
                time.sleep(delay)  # a worker thread of the front, never its event loop
                delay = min(delay * 2, 0.8)
                continue
            # Found after a try whose commit we did not hear about: that job is ours.
            return Enqueued(job=enqueued.job, created=True) if tried else enqueued

    def _workflow(self, request: GenerationRequest) -> Workflow:
        try:
            workflow = self.catalog.get(request.workflow)
        except UnknownWorkflow as exc:
            raise Refusal(str(exc).capitalize() + ". See the list of workflows.") from None
        if workflow.manifest.purpose is not request.purpose:
            raise Refusal(f"{workflow.name} is not a workflow for this. See the list of workflows.")
        return workflow

    def _image_parameter(self, workflow: Workflow) -> str:
        names = workflow.manifest.image_parameters()
        if not names:
            raise Refusal(
                f"{workflow.manifest.title} does not take an image; pick an image workflow "
                "or leave the image out."
            )
        return names[0]

    def _checked_image(self, image: Attachment) -> str:
        if image.by_url:
            return image.url
        limit = self.settings.max_attachment_bytes
        if image.content_type not in IMAGE_TYPES:
            shown = image.content_type or "an unknown type"
            raise Refusal(f"{image.filename} is {shown}; attach a PNG, JPEG or WebP image.")
        if image.size > limit:
            raise Refusal(
                f"{image.filename} is {image.size / 2**20:.1f} MiB; the limit is "
                f"{limit / 2**20:.0f} MiB."
            )
        pixels = (image.width or 0) * (image.height or 0)
        if pixels > self.worker.max_input_pixels:
            raise Refusal(f"{image.filename} is {image.width}x{image.height}; that is too large.")
        return image.url
