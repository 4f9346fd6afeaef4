"""What each button does: Reroll, Upscale and Variations queue a new job through the
same intake as /serve; Delete and Cancel act on the job for its requester only."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import timedelta

import discord
from pydantic import SecretStr

from bot import messages
from bot.progress import ProgressTracker
from bot.replies import (
    age_restricted,
    claim_interaction,
    guarded,
    reply,
    tiers_by_role,
    within_ack_budget,
)
from bot.views import Action, queued_view
from stillhouse.intake import Accepted, GenerationRequest, Intake, Refusal, Requester
from stillhouse.queue.records import CancelOutcome, JobRecord
from stillhouse.schemas.manifest import ParamValue, Purpose
from stillhouse.schemas.states import JobStatus
from stillhouse.services import Services

log = logging.getLogger(__name__)
_CANCELLED = {
    CancelOutcome.CANCELLED: "Cancelled.",
    CancelOutcome.REQUESTED: "Cancelling: the GPU job is being stopped.",
    CancelOutcome.ALREADY_FINISHED: "That request has already finished.",
    CancelOutcome.NOT_FOUND: "That request no longer exists.",
}


class Buttons:
    """Handles every JobButton press."""

    def __init__(self, services: Services, intake: Intake, tracker: ProgressTracker) -> None:
        self._s = services
        self._intake = intake
        self._tracker = tracker

    async def press(
        self, interaction: discord.Interaction, action: Action, job: str, index: int | None
    ) -> None:
        """Do what the button says, answering the interaction exactly once."""
        if not claim_interaction(self._s.locks, interaction):
            return
        with_job = {
            Action.CANCEL: self._cancel,
            Action.DELETE: self._delete,
            Action.REROLL: self._reroll,
            Action.UPSCALE: self._upscale,
            Action.VARIATIONS: self._variations,
            Action.OPEN: self._open,
        }[action]

        async def handle() -> None:
            record = await asyncio.to_thread(self._s.queue.get, job)
            if record is None:
                raise Refusal("That request no longer exists.")
            await with_job(interaction, record, index)

        await guarded(interaction, handle)

    # -- acting on the job ----------------------------------------------------------------

    async def _cancel(
        self, interaction: discord.Interaction, job: JobRecord, _index: int | None
    ) -> None:
        self._only_requester(interaction, job, "cancel")
        outcome = await asyncio.to_thread(self._s.queue.cancel, job.public_id)
        await reply(interaction, _CANCELLED[outcome])

    async def _delete(
        self, interaction: discord.Interaction, job: JobRecord, _index: int | None
    ) -> None:
        self._only_requester(interaction, job, "delete")
        await interaction.response.defer()
        if interaction.message is not None:
            await interaction.message.delete()
        shared = False
        if job.result is not None:
            # The user asked for them to be gone, unless other requests were answered with
            # the same images (stillhouse.queue.reuse): then they stay for those.
            shared = not await asyncio.to_thread(self._s.queue.release_images, job)
            for image in [] if shared else job.result.images:
                await asyncio.to_thread(self._s.storage.delete, image.key)
        log.info(
            "result deleted",
            extra={
                "action": "bot.delete",
                "public_id": job.public_id,
                "images_kept_shared": shared,
            },
        )

    async def _open(
        self, interaction: discord.Interaction, job: JobRecord, _index: int | None
    ) -> None:
        """A result again, for its requester only (from /history)."""
        self._only_requester(interaction, job, "open")
        if job.result is None:
            raise Refusal("That request has no images.")
        files = []
        for number, image in enumerate(job.result.images, start=1):
            data = await asyncio.to_thread(self._s.storage.get, image.key)
            files.append(discord.File(io.BytesIO(data), f"{job.public_id}-{number}.png"))
        text = messages.result(job.public_id, job.workflow_name, job.params, [])
        await interaction.response.send_message(text, files=files, ephemeral=True)

    # -- queueing a new job from an old one -------------------------------------------------

    async def _reroll(
        self, interaction: discord.Interaction, job: JobRecord, _index: int | None
    ) -> None:
        values: dict[str, ParamValue] = {
            k: v for k, v in job.params.root.items() if k != "seed" and v is not None
        }
        purpose = self._s.catalog.get(job.workflow_name).manifest.purpose
        await self._queue(
            interaction,
            GenerationRequest(workflow=job.workflow_name, values=values, purpose=purpose),
        )

    async def _upscale(
        self, interaction: discord.Interaction, job: JobRecord, index: int | None
    ) -> None:
        key = self._image_key(job, index)
        workflow = self._s.settings.bot.upscale_workflow
        await self._queue(
            interaction,
            GenerationRequest(workflow=workflow, values={"image": key}, purpose=Purpose.UPSCALE),
        )

    async def _variations(
        self, interaction: discord.Interaction, job: JobRecord, index: int | None
    ) -> None:
        key = self._image_key(job, index)
        values: dict[str, ParamValue] = {"image": key}
        for name in ("prompt", "negative_prompt"):
            text = job.params.root.get(name)
            if isinstance(text, str):
                values[name] = text
        workflow = self._s.settings.bot.variations_workflow
        request = GenerationRequest(workflow=workflow, values=values, purpose=Purpose.VARIATIONS)
        await self._queue(interaction, request)

    async def _queue(self, interaction: discord.Interaction, request: GenerationRequest) -> None:
        requester = requester_of(interaction, self._s)

        def admit() -> Accepted:  # in a thread: reads the server's settings first
            own = self._intake.server(interaction.guild_id, interaction.channel_id)
            roles = tiers_by_role(own, interaction)
            bound = self._intake.prepare(
                request, interaction.guild_id, own, age_restricted=age_restricted(interaction)
            )
            return self._intake.submit(bound, requester.model_copy(update={"tier_roles": roles}))

        accepted = await within_ack_budget(interaction, admit)
        job = accepted.enqueued.job
        text = messages.queued(job.public_id, accepted.position, reused_from=job.reused_from)
        await reply(interaction, text, ephemeral=False, view=queued_view(job.public_id))
        if job.reused_from is None:
            self._tracker.track(job.public_id, interaction, shown=text)

    def _image_key(self, job: JobRecord, index: int | None) -> str:
        if job.status is not JobStatus.SUCCEEDED or job.result is None:
            raise Refusal("That request has no images (yet).")
        images = job.result.images
        chosen = index or 0
        if not 0 <= chosen < len(images):
            raise Refusal("That image is not part of the result.")
        return images[chosen].key

    def _only_requester(self, interaction: discord.Interaction, job: JobRecord, verb: str) -> None:
        user = interaction.user
        if user.id == job.routing.user_id or user.id in self._s.settings.bot.admin_list():
            return
        raise Refusal(f"Only the person who asked can {verb} this.")


def requester_of(interaction: discord.Interaction, services: Services) -> Requester:
    """Who is asking, and the interaction that will carry the answer."""
    guild = interaction.guild
    client = interaction.client
    shard = guild.shard_id if guild is not None else 0
    if guild is None and interaction.guild_id is not None and client.shard_count:
        shard = (interaction.guild_id >> 22) % client.shard_count
    lifetime = timedelta(seconds=services.settings.bot.token_lifetime_s)
    return Requester(
        source="discord",
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        shard_id=shard,
        request_id=interaction.id,
        reply_token=SecretStr(interaction.token),
        reply_token_expires_at=interaction.created_at + lifetime,
    )
