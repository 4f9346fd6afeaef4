"""What each button does: Reroll, Remix, Enhance and the follow-ups of a result (Vary,
Upscale, Zoom Out, Pan, Variations: stillhouse.followups) queue a new job through the same
intake as /serve (bot.queueing); Vary Region answers with a link to the web editor;
Delete and Cancel act on the job for its requester only."""

from __future__ import annotations

import asyncio
import io
import logging

import discord

from bot import messages
from bot.context import BotContext
from bot.options import REMIX_FORM, enhanced_note, form_id, remix_modal, submitted
from bot.queueing import queue_request, requester_of
from bot.replies import age_restricted, claim_interaction, guarded, reply
from bot.views import FOLLOW_UPS, Action
from stillhouse.edit_links import edit_link
from stillhouse.followups import FollowUp, NotOffered, plan
from stillhouse.intake import NOT_YOURS, GenerationRequest, Refusal
from stillhouse.queue.records import CancelOutcome, JobRecord
from stillhouse.schemas.manifest import ParamValue
from stillhouse.schemas.states import JobStatus
from stillhouse.schemas.worker_io import ImageRef

log = logging.getLogger(__name__)
_CANCELLED = {
    CancelOutcome.CANCELLED: "Cancelled.",
    CancelOutcome.REQUESTED: "Cancelling: the GPU job is being stopped.",
    CancelOutcome.ALREADY_FINISHED: "That request has already finished.",
    CancelOutcome.NOT_FOUND: "That request no longer exists.",
}


class Buttons:
    """Handles every JobButton press."""

    def __init__(self, ctx: BotContext) -> None:
        self._ctx = ctx
        self._s = ctx.services
        self._prompts = ctx.prompt_help

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
            Action.OPEN: self._open,
            Action.VARY_REGION: self._vary_region,
            Action.REMIX: self._remix,
            Action.ENHANCE: self._enhance,
        }.get(action)

        async def handle() -> None:
            record = await asyncio.to_thread(self._s.queue.get, job)
            if record is None:
                raise Refusal("That request no longer exists.")
            if with_job is None:  # a follow-up of the result (Vary Region is a link)
                await self._follow_up(interaction, record, index, FOLLOW_UPS[action])
                return
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

    async def _follow_up(
        self,
        interaction: discord.Interaction,
        job: JobRecord,
        index: int | None,
        follow_up: FollowUp = FollowUp.UPSCALE,
    ) -> None:
        """Upscale, Variations, Vary, Upscale (Creative), Zoom Out: the workflow for it in
        the result's family, keeping its prompt, checkpoint and LoRAs."""
        image = self._image(job, index)
        settings = self._s.settings

        def planned() -> GenerationRequest:
            try:
                chosen = plan(
                    follow_up,
                    job,
                    image.key,
                    (image.width, image.height),
                    self._s.catalog,
                    self._s.queue.get,
                    prefix=settings.storage.s3_prefix,
                    preferred=settings.bot.preferred_workflows(),
                )
            except NotOffered as exc:
                raise Refusal(str(exc)) from None
            manifest = chosen.workflow.manifest
            return GenerationRequest(
                workflow=chosen.workflow.name, values=chosen.values, purpose=manifest.purpose
            )

        await self._queue(interaction, await asyncio.to_thread(planned))

    async def _vary_region(
        self, interaction: discord.Interaction, job: JobRecord, index: int | None
    ) -> None:
        """A link to the web editor, for the presser only: they paint the region there and
        the result arrives here like any other."""
        image = self._image(job, index)
        if interaction.user.id != job.routing.user_id:
            raise Refusal(NOT_YOURS, "forbidden")  # as the intake says it for the others
        number = job.result.images.index(image) if job.result else 0
        requester = requester_of(interaction, self._s)
        link = edit_link(
            self._s.settings,
            job.public_id,
            number,
            interaction.user.id,
            interaction.guild_id,
            interaction.channel_id,
            requester.shard_id,
            age_restricted=bool(age_restricted(interaction)),
        )
        if link is None:
            raise Refusal("Vary Region is not switched on here.")
        minutes = max(1, self._s.settings.api.edit_link_lifetime_s // 60)
        view = discord.ui.View(timeout=None)
        view.add_item(discord.ui.Button(label="Open the editor", url=link))
        text = (
            f"Paint the region of image {number + 1} of `{job.public_id}` to change, say what "
            f"goes there, and send: the result comes here. The link is yours for {minutes} min."
        )
        await reply(interaction, text, ephemeral=True, view=view)

    async def _remix(
        self, interaction: discord.Interaction, job: JobRecord, _index: int | None
    ) -> None:
        """A form with the prompt and the workflow's options, filled in from the job:
        what is sent runs as a new request (bot.options)."""
        workflow = self._s.catalog.workflows.get(job.workflow_name)
        if workflow is None:
            raise Refusal("That workflow is no longer offered here.")
        await interaction.response.send_modal(remix_modal(job, workflow))

    async def remix_submitted(self, interaction: discord.Interaction) -> None:
        """The Remix form, sent: the job's values, the form's over them, a new seed."""
        custom_id = form_id(interaction)
        match = REMIX_FORM.fullmatch(custom_id)
        if match is None or not claim_interaction(self._s.locks, interaction):
            return

        async def handle() -> None:
            job = await asyncio.to_thread(self._s.queue.get, match["job"])
            if job is None:
                raise Refusal("That request no longer exists.")
            fields = submitted(interaction)
            values = {k: v for k, v in job.params.root.items() if k != "seed"}
            values.update(fields.values, prompt=fields.prompt)
            purpose = self._s.catalog.get(job.workflow_name).manifest.purpose
            request = GenerationRequest(workflow=job.workflow_name, values=values, purpose=purpose)
            await self._queue(interaction, request)

        await guarded(interaction, handle)

    async def _enhance(
        self, interaction: discord.Interaction, job: JobRecord, _index: int | None
    ) -> None:
        """The prompt rewritten by prompt help, run again: both prompts are shown."""
        prompt = job.params.root.get("prompt")
        if not isinstance(prompt, str):
            raise Refusal("That request has no prompt to enhance.")
        await interaction.response.defer(thinking=True)
        enhancement = await self._prompts.enhance(prompt, interaction=interaction.id)
        values = {k: v for k, v in job.params.root.items() if k != "seed"}
        values["prompt"] = enhancement.prompt
        purpose = self._s.catalog.get(job.workflow_name).manifest.purpose
        request = GenerationRequest(workflow=job.workflow_name, values=values, purpose=purpose)
        await self._queue(interaction, request, note=enhanced_note(enhancement))

    async def _queue(
        self, interaction: discord.Interaction, request: GenerationRequest, note: str = ""
    ) -> None:
        # The result's values, not the presser's /settings defaults.
        await queue_request(self._ctx, interaction, request, note=note, user_defaults=False)

    def _image(self, job: JobRecord, index: int | None) -> ImageRef:
        if job.status is not JobStatus.SUCCEEDED or job.result is None:
            raise Refusal("That request has no images (yet).")
        images = job.result.images
        chosen = index or 0
        if not 0 <= chosen < len(images):
            raise Refusal("That image is not part of the result.")
        return images[chosen]

    def _only_requester(self, interaction: discord.Interaction, job: JobRecord, verb: str) -> None:
        user = interaction.user
        if user.id == job.routing.user_id or user.id in self._s.settings.bot.admin_list():
            return
        raise Refusal(f"Only the person who asked can {verb} this.")
