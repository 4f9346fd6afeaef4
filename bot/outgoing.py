"""What a send row says: the text, the images (attached, or linked when too large) and
the buttons, rendered once and sent by whichever route carries it (see bot.routes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import discord

from bot import messages
from bot.screening import SPOILER, screen
from bot.views import result_view
from stillhouse.queue.records import DeliveryRecord
from stillhouse.schemas.jobs import FailurePayload, NoticePayload, ResultPayload
from stillhouse.schemas.manifest import Purpose
from stillhouse.services import Services

MAX_FILES = 10  # Discord's limit of attachments per message
DEFAULT_UPLOAD_LIMIT = 10 * 2**20


@dataclass
class Outgoing:
    """One message, ready for either route."""

    content: str
    images: list[tuple[str, bytes]]
    view: discord.ui.View | None


async def render(
    row: DeliveryRecord, services: Services, client: discord.Client
) -> Outgoing | None:
    """The message for a row; None for rows no message shows (progress)."""
    payload = row.payload
    if isinstance(payload, FailurePayload):
        return Outgoing(messages.failure(row.job_public_id, payload), [], None)
    if isinstance(payload, NoticePayload):
        return Outgoing(messages.notice(row.job_public_id, payload.text), [], None)
    if not isinstance(payload, ResultPayload):
        return None  # progress rows are shown by editing the queued message
    return await _result(row, payload, services, client)


async def _result(
    row: DeliveryRecord, payload: ResultPayload, services: Services, client: discord.Client
) -> Outgoing:
    limit = _upload_limit(client, row.routing.guild_id)
    attached: list[tuple[str, bytes]] = []
    links: list[str] = []
    total = 0
    for index, image in enumerate(payload.images):
        extension = "png" if image.content_type == "image/png" else "jpg"
        name = f"{row.job_public_id}-{index + 1}.{extension}"
        if len(attached) < MAX_FILES and total + image.bytes <= limit:
            data = await asyncio.to_thread(services.storage.get, image.key)
            attached.append((name, data))
            total += len(data)
        else:
            links.append(await asyncio.to_thread(services.storage.url, image.key))
    if row.routing.visibility == "spoiler":
        attached = [(SPOILER + name, data) for name, data in attached]
    attached, screened = await screen(row, attached, services, client)
    workflow = services.catalog.workflows.get(payload.workflow_name)
    title = workflow.manifest.title if workflow else payload.workflow_name
    purpose = workflow.manifest.purpose if workflow else Purpose.UPSCALE
    names = services.catalog.workflows
    bot = services.settings.bot
    view = result_view(
        row.job_public_id,
        len(payload.images),
        upscale=purpose is not Purpose.UPSCALE and bot.upscale_workflow in names,
        variations=purpose is not Purpose.UPSCALE and bot.variations_workflow in names,
        reroll=purpose is not Purpose.UPSCALE,
    )
    text = messages.result(
        row.job_public_id,
        title,
        payload.params,
        links,
        cancel_too_late=payload.cancel_too_late,
        reused_from=payload.reused_from,
    )
    return Outgoing("\n".join([text, *screened]), attached, view)


def _upload_limit(client: discord.Client, guild_id: int | None) -> int:
    guild = client.get_guild(guild_id) if guild_id else None
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
