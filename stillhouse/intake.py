"""From a request to a queued job: every check a front (the bot, the API) makes before
anything is queued. Each check that fails raises Refusal with the sentence the user reads.

The order matters: checks that need nothing but the request (workflow, values, filter,
attachment) come first and cost nothing (`prepare`); then `submit`: a request already
made is answered as made; paused intake and bans; then one transaction that locks the
user's row, counts their limits (rate, unfinished requests, quota) and inserts the job,
idempotent on the request id (a Discord interaction, an API Idempotency-Key), so two
replicas of one shard make one job and concurrent requests cannot overrun a limit.

Input images (stillhouse.inputs): a URL must be on a host the workers accept (checked
in `prepare`, with the worker's own sentence); a storage key must be the requester's own,
a result of one of their jobs or an upload of theirs (checked in `submit`, which knows who
asks): anything else is refused as "forbidden" with one sentence whether or not the key
exists, so the master never presigns someone else's image for a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.exc import DBAPIError

from stillhouse.config import IntakeSettings, StorageSettings, WorkerSettings
from stillhouse.db.engine import is_outage
from stillhouse.errors import StillhouseError
from stillhouse.filters import ContentFilter, FilterFile
from stillhouse.followups import NotOffered, workflow_for
from stillhouse.hints import JOBS, Hints, InProcessHints
from stillhouse.inputs import (
    ResultOf,
    UploadBy,
    allowed_hosts,
    key_origin,
    owner_tag,
    refused_source,
)
from stillhouse.models_catalog import Asker, LoraRequest, ModelCatalog, ModelRefused, choose
from stillhouse.moderation import EVERYWHERE, Moderation, Standing
from stillhouse.preferences import GuildSettings, UserSettings, server_and_user
from stillhouse.queue import GenerationQueue
from stillhouse.queue.admission import IdempotencyConflict, LimitReached, Limits, same_request
from stillhouse.queue.records import Enqueued, JobRecord, QueuePosition
from stillhouse.queue.reuse import reuse_key
from stillhouse.queue.timing import Clock, utcnow
from stillhouse.schemas.guilds import GuildConfig
from stillhouse.schemas.jobs import NewJob, Routing, Visibility
from stillhouse.schemas.manifest import SERVED, ParamValue, Purpose
from stillhouse.schemas.states import JobStatus
from stillhouse.schemas.users import UserConfig
from stillhouse.tiers import SPANS, Tier, Tiers, load_tiers
from stillhouse.workflows.binder import BoundWorkflow, ParameterError, bind
from stillhouse.workflows.loader import UnknownWorkflow, Workflow, WorkflowCatalog

log = logging.getLogger(__name__)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
PROMPT_FIELDS = ("prompt", "negative_prompt")
ENQUEUE_RETRY_S = 2.5  # within Discord's 3 s, or the deferred answer that follows it


RefusalKind = Literal["invalid", "paused", "banned", "limited", "conflict", "forbidden"]
REUSED_KEY = (
    "That Idempotency-Key was already used for a different request; "
    "send a new key with a new request."
)
NOT_YOURS = (
    "You can only use your own images: an image URL, one of your uploads or one of "
    "your own results."
)


class Refusal(StillhouseError):
    """A request we will not queue; the message is for the user. `kind` says why, for
    fronts that answer with a status code: bad request, paused intake, banned, over a
    limit (rate, unfinished requests, quota; `retry_after_s` when known), a request id
    reused for another request, or something the caller may not use."""

    def __init__(
        self,
        message: str,
        kind: RefusalKind = "invalid",
        *,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind
        self.retry_after_s = retry_after_s


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
    tier_roles: list[str] = Field(
        default_factory=list, description="tiers the user's roles give in that server"
    )
    visibility: Visibility = "public"


class GenerationRequest(BaseModel):
    """A workflow and the values a user set for it. Left out (None): the workflow, preset
    and aspect the server chose (stillhouse.preferences), else the operators' default."""

    workflow: str | None = None
    values: dict[str, ParamValue] = {}
    preset: str | None = None
    aspect: str | None = None
    image: Attachment | None = None
    purpose: Purpose = Purpose.GENERATE
    model: str | None = Field(default=None, description="a catalog checkpoint's name or title")
    loras: list[LoraRequest] = Field(default_factory=list, description="catalog LoRAs, in order")


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
    storage: StorageSettings
    catalog: WorkflowCatalog
    content_filter: ContentFilter
    moderation: Moderation
    queue: GenerationQueue
    nsfw_filter: ContentFilter = field(default_factory=lambda: ContentFilter(FilterFile()))
    clock: Clock = utcnow
    hints: Hints = field(default_factory=InProcessHints)
    tiers: Tiers | None = None  # the operators' file; None: one tier from `settings`
    guilds: GuildSettings | None = None  # None: no server settings (tests, the API alone)
    users: UserSettings | None = None  # None: no users' own defaults
    models: ModelCatalog | None = None  # the operators' catalog; None: the built-in one

    def model_catalog(self) -> ModelCatalog:
        """The checkpoints and LoRAs users may choose (stillhouse.models_catalog)."""
        if self.models is None:
            self.models = ModelCatalog.builtin(self.catalog)
        return self.models

    def current_tiers(self) -> Tiers:
        """The operators' tiers, or the one the intake settings describe (read each time:
        the settings may change while the process runs)."""
        return self.tiers if self.tiers is not None else load_tiers(self.settings)

    def mine(self, user_id: int) -> UserConfig:
        """The user's own defaults (/settings)."""
        return self.users.get(user_id) if self.users is not None else UserConfig()

    def server(self, guild_id: int | None, channel_id: int | None) -> GuildConfig:
        """The server's own settings, or Refusal when /serve does not work in this
        channel (its managers chose others)."""
        own = self.guilds.get(guild_id) if self.guilds is not None else GuildConfig()
        self._check_channel(own, channel_id)
        return own

    def server_and_mine(
        self, guild_id: int | None, channel_id: int | None, user_id: int
    ) -> tuple[GuildConfig, UserConfig]:
        """`server` and `mine` in one round trip (what /serve reads)."""
        if self.guilds is None or self.users is None:
            return self.server(guild_id, channel_id), self.mine(user_id)
        own, mine = server_and_user(self.guilds.engine, guild_id, user_id)
        self._check_channel(own, channel_id)
        return own, mine

    @staticmethod
    def _check_channel(own: GuildConfig, channel_id: int | None) -> None:
        if not own.serves_in(channel_id):
            where = ", ".join(f"<#{channel}>" for channel in own.channels)
            raise Refusal(f"Requests are not taken in this channel. Try {where}.", "forbidden")

    def prepare(
        self,
        request: GenerationRequest,
        guild_id: int | None = None,
        own: GuildConfig | None = None,
        mine: UserConfig | None = None,
        *,
        age_restricted: bool | None = None,
        asker: Asker | None = None,
    ) -> BoundWorkflow:
        """The checks that need no database: a graph ready to queue, or Refusal. `own`:
        the server's settings (its defaults, its filter); `mine`: the user's defaults;
        `age_restricted`: whether the Discord channel is (None: no channel, the API);
        `asker`: the user and their role ids, for the catalog's private models (None:
        nobody in particular: public models, and those of the server `guild_id`)."""
        own, mine = own or GuildConfig(), mine or UserConfig()
        workflow = self.workflow_for(request, own, mine)
        presets, aspects = workflow.manifest.presets, workflow.manifest.aspects
        # What the request says; else the user's default, then the server's, where this
        # workflow has it.
        preset = request.preset or _first_in(presets, mine.mode, own.mode)
        aspect = request.aspect or _first_in(aspects, mine.aspect, own.aspect)
        values = dict(request.values)
        for name in PROMPT_FIELDS:
            text = values.get(name)
            if isinstance(text, str):
                matched = self.content_filter.violation(text, guild_id, own)
                if matched is not None:
                    raise Refusal(
                        f"Your {name.replace('_', ' ')} contains “{matched}”, "
                        "which is not allowed here."
                    )
                adult = self.nsfw_filter.violation(text, None) if age_restricted is False else None
                if adult is not None:
                    raise Refusal(
                        f"Your {name.replace('_', ' ')} contains “{adult}”: Discord allows "
                        "adult content only in age-restricted channels, and this one is not."
                    )
        if request.image is not None:
            values[self._image_parameter(workflow)] = self.checked_image(request.image)
        who = asker or Asker()
        who = Asker(who.user_id, guild_id if guild_id is not None else who.guild_id, who.role_ids)
        try:
            catalog = self.model_catalog()
            loras = choose(catalog, workflow, values, who, model=request.model, loras=request.loras)
        except ModelRefused as exc:
            raise Refusal(str(exc), exc.kind) from None
        try:
            bound = bind(workflow, values, preset=preset, aspect=aspect, loras=loras)
        except ParameterError as exc:
            problems = "; ".join(exc.problems)
            raise Refusal(f"That request does not fit the workflow: {problems}") from None
        self._check_hosts(bound)
        return bound

    def submit(
        self, bound: BoundWorkflow, requester: Requester, *, digest: str | None = None
    ) -> Accepted:
        """Admit and queue a prepared request; Refusal if it may not be queued now.

        A request already made (same request id) is answered first, before any limit:
        a client retrying what it was promised gets it (or, when `digest` says the id
        came with another request, a conflict). Then paused intake and bans, everywhere
        and in the requester's guild; that every stored image is the requester's own;
        then the user's limits, counted in the one transaction that inserts the job, so
        concurrent requests cannot all pass."""
        standing = self.moderation.standing(requester.user_id, requester.guild_id)
        try:
            self._check_open(standing)
            self._check_owned(bound, requester)
        except Refusal:
            # Looked up only now: the admission transaction finds a retry on its own.
            existing = self._made_before(requester)
            if existing is None:
                raise
            return self._accepted(self._same_request(existing, digest), bound, requester)
        tier, limits = self.limits_for(standing, requester.tier_roles)
        job = self._new_job(bound, requester).model_copy(update={"head_start_s": tier.head_start_s})
        enqueued = self._enqueue(job, limits, digest)
        return self._accepted(enqueued, bound, requester)

    def _made_before(self, requester: Requester) -> JobRecord | None:
        if requester.request_id is None:
            return None
        return self.queue.get_by_interaction(requester.request_id)

    @staticmethod
    def _check_open(standing: Standing) -> None:
        paused = standing.paused
        if paused is not None:
            where = " here" if paused.guild_id != EVERYWHERE else ""
            why = f" ({paused.note})" if paused.note else ""
            raise Refusal(
                f"New requests are paused{where} for now{why}. Please try again later.",
                "paused",
            )
        if standing.banned:
            raise Refusal("You cannot make requests here.", "banned")

    def _check_hosts(self, bound: BoundWorkflow) -> None:
        """Image URLs only from hosts the workers fetch from (the same list, the same
        sentence): refused now rather than after a wait for a GPU."""
        hosts = allowed_hosts(self.worker, self.storage)
        for source in bound.inputs:
            problem = None if source.url is None else refused_source(str(source.url), hosts)
            if problem is not None:
                raise Refusal(problem)

    def _check_owned(self, bound: BoundWorkflow, requester: Requester) -> None:
        for source in bound.inputs:
            key = source.storage_key
            if key is not None and not self._owns(key, requester):
                raise Refusal(NOT_YOURS, "forbidden")

    def _owns(self, key: str, requester: Requester) -> bool:
        """An upload under the requester's tag, or an image of one of their own results."""
        origin = key_origin(key, self.storage.s3_prefix)
        if isinstance(origin, UploadBy):
            return origin.tag == owner_tag(requester.user_id)
        if not isinstance(origin, ResultOf):
            return False
        job = self.queue.get(origin.job_id)
        if job is None or job.result is None or key not in {i.key for i in job.result.images}:
            return False
        routing = job.routing
        if routing.source == requester.source and routing.user_id == requester.user_id:
            return True
        # Images another job made are also the requester's when they were reused for them.
        return self.queue.reused_by(requester.source, requester.user_id, origin.job_id)

    def limits_for(self, standing: Standing, tier_roles: list[str]) -> tuple[Tier, Limits]:
        """The user's tier and its limits; their own daily quota (0 included), when the
        operators set one, replaces the tier's day (admission, /info)."""
        tiers = self.current_tiers()
        name = tiers.name_of(standing.tier, tier_roles)
        quotas = tiers.tiers[name].quotas()
        if standing.quota is not None:
            quotas["day"] = standing.quota
        limits = Limits(max_active=self.settings.max_active_jobs, quotas=quotas, tier=name)
        return tiers.tiers[name], limits

    @staticmethod
    def _same_request(existing: JobRecord, digest: str | None) -> Enqueued:
        try:
            return same_request(existing, digest)
        except IdempotencyConflict:
            raise Refusal(REUSED_KEY, "conflict") from None

    def _new_job(self, bound: BoundWorkflow, requester: Requester) -> NewJob:
        return NewJob(
            routing=Routing(
                source=requester.source,
                user_id=requester.user_id,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                shard_id=requester.shard_id,
                interaction_token=requester.reply_token,
                interaction_expires_at=requester.reply_token_expires_at,
                visibility=requester.visibility,
            ),
            interaction_id=requester.request_id,
            workflow_name=bound.workflow,
            workflow_version=bound.version,
            params=bound.params,
            graph=bound.graph,
            inputs=bound.inputs,
            reuse_key=(
                reuse_key(bound.workflow, bound.version, bound.graph, bound.inputs)
                if self.settings.reuse_results_s
                else None
            ),
        )

    def _accepted(self, enqueued: Enqueued, bound: BoundWorkflow, requester: Requester) -> Accepted:
        """Where the job stands, logged."""
        try:
            position = self.queue.position_of(enqueued.job)
        except DBAPIError:  # it is queued; where it stands can be told later
            position = QueuePosition(status=JobStatus.QUEUED, ahead=None, estimated_wait_s=None)
        log.info(
            "request queued" if enqueued.created else "request already queued",
            extra={
                "action": "intake.enqueue",
                "public_id": enqueued.job.public_id,
                "workflow": enqueued.job.workflow_name,
                "source": requester.source,
                "user": requester.user_id,
                "interaction": requester.request_id,
                "shard": requester.shard_id,
            },
        )
        return Accepted(enqueued=enqueued, position=position, bound=bound)

    def _enqueue(self, job: NewJob, limits: Limits, digest: str | None) -> Enqueued:
        """Insert the job within the user's limits. A connection lost during the commit
        leaves its fate unknown: a request with an id is tried again (its unique id finds
        the job if the first try committed) for up to ENQUEUE_RETRY_S, so a database
        restart mid-request neither loses the job nor tells the user it failed when it
        did not."""
        retrying_until = time.monotonic() + ENQUEUE_RETRY_S
        delay, tried = 0.1, False
        wake = partial(self.hints.bump, JOBS)  # a master claims it now, not at its next look
        while True:
            try:
                enqueued = self.queue.enqueue(
                    job,
                    limits=limits,
                    digest=digest,
                    reuse_within_s=self.settings.reuse_results_s,
                    queued=wake,  # right after the commit, before the record is built
                )
            except LimitReached as exc:
                raise _over_limit(exc) from None
            except IdempotencyConflict:
                raise Refusal(REUSED_KEY, "conflict") from None
            except DBAPIError as exc:
                retry = job.interaction_id is not None and is_outage(exc)
                if not retry or time.monotonic() + delay > retrying_until:
                    raise
                tried = True
                time.sleep(delay)  # a worker thread of the front, never its event loop
                delay = min(delay * 2, 0.8)
                continue
            if not tried:
                return enqueued
            # Found after a try whose commit we did not hear about: that job is ours.
            if enqueued.job.status is JobStatus.QUEUED:
                wake()
            return Enqueued(job=enqueued.job, created=True)

    def workflow_for(
        self, request: GenerationRequest, own: GuildConfig, mine: UserConfig
    ) -> Workflow:
        """The workflow `request` runs: the one it names (loosely), else the user's
        default, then the server's while the catalog has them, else the operators'; for
        /serve a text-to-image or image-to-image one, the family's image-to-image one when
        a picture comes with a text-to-image workflow. Refusal when there is none."""
        name = request.workflow or _first_in(self.catalog.workflows, mine.workflow, own.workflow)
        name = name or self.settings.default_workflow
        # /serve takes text-to-image workflows and, with a picture, image-to-image ones.
        purposes = SERVED if request.purpose is Purpose.GENERATE else (request.purpose,)
        workflow: Workflow | None = None
        for purpose in purposes:
            try:
                workflow = self.catalog.find(name, purpose)
                break
            except UnknownWorkflow as exc:
                unknown = exc
        if workflow is None:
            raise Refusal(str(unknown).capitalize() + ". See the list of workflows.")
        if workflow.manifest.purpose not in purposes:
            raise Refusal(
                f"{workflow.manifest.title} is not a workflow for this. See the list of workflows."
            )
        if request.image is not None and not workflow.manifest.image_parameters():
            # A picture attached to a text-to-image request: the same family's image one.
            workflow = self._image_workflow_like(workflow) or workflow
        return workflow

    def _image_workflow_like(self, workflow: Workflow) -> Workflow | None:
        family = workflow.manifest.family
        if family is None:
            return None
        try:
            return workflow_for(self.catalog, Purpose.IMG2IMG, family)
        except NotOffered:
            return None

    def _image_parameter(self, workflow: Workflow) -> str:
        names = workflow.manifest.image_parameters()
        if not names:
            raise Refusal(
                f"{workflow.manifest.title} does not take an image; pick an image workflow "
                "or leave the image out."
            )
        return names[0]

    def checked_image(self, image: Attachment) -> str:
        """The attachment's URL, or Refusal when it is not an image we take (its type,
        bytes or pixels)."""
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


def _first_in(offered: Container[str], *choices: str | None) -> str | None:
    """The first choice that is on offer."""
    return next((c for c in choices if c is not None and c in offered), None)


def _over_limit(exc: LimitReached) -> Refusal:
    wait = f" Try again in {max(1, round(exc.retry_after_s))} s." if exc.retry_after_s else ""
    if exc.kind == "rate":
        text = f"You are going fast: at most {exc.limit} requests a minute.{wait}"
    elif exc.kind == "active":
        text = (
            f"You already have {exc.count} requests waiting or running (the limit is "
            f"{exc.limit}). Wait for one to finish or cancel one."
        )
    else:
        window = exc.window or "day"
        frees = ""
        if exc.retry_after_s is not None:
            frees = f" The next one frees in {_duration(exc.retry_after_s)}."
        text = f"You have used your {exc.limit} requests for the {window} ({SPANS[window]}).{frees}"
    return Refusal(text, "limited", retry_after_s=exc.retry_after_s)


def _duration(seconds: float) -> str:
    """A wait in words, to the unit that matters: 40 s, 12 min, 3 h 5 min, 2 days 4 h."""
    whole = max(1, round(seconds))
    if whole < 90:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"
