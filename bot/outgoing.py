"""What a send row says: the text, the images (attached, or linked when too large) and
the buttons, rendered once and sent by whichever route carries it (see bot.routes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from bot import messages
from bot.screening import SPOILER, screen
from bot.views import FOLLOW_UPS, Action, result_view
from stillhouse.followups import PURPOSE, NotOffered, family_of, workflow_for
from stillhouse.queue.records import DeliveryRecord
from stillhouse.schemas.jobs import FailurePayload, NoticePayload, ResultPayload
from stillhouse.schemas.manifest import Purpose
from stillhouse.services import Services

MAX_FILES = 10  # Discord's limit of attachments per message
DEFAULT_UPLOAD_LIMIT = 10 * 2**20
ReadObject = Callable[[str], Awaitable[bytes]]  # a stored object's bytes, by key


@dataclass
class Outgoing:
    """One message, ready for either route."""

    content: str
    images: list[tuple[str, bytes]]
    view: discord.ui.View | None


async def render(
    row: DeliveryRecord, services: Services, client: discord.Client, read: ReadObject
) -> Outgoing | None:
    """The message for a row; None for rows no message shows (progress). Its images
    are read with `read`."""
    payload = row.payload
    if isinstance(payload, FailurePayload):
        return Outgoing(messages.failure(row.job_public_id, payload), [], None)
    if isinstance(payload, NoticePayload):
        return Outgoing(messages.notice(row.job_public_id, payload.text), [], None)
    if not isinstance(payload, ResultPayload):
        return None  # progress rows are shown by editing the queued message
    return await _result(row, payload, services, client, read)


async def _result(
    row: DeliveryRecord,
    payload: ResultPayload,
    services: Services,
    client: discord.Client,
    read: ReadObject,
) -> Outgoing:
    limit = _upload_limit(client, row.routing.guild_id)
    fetched: list[tuple[str, str]] = []  # (name, key): attached
    linked: list[str] = []  # keys: too many or too large to attach
    total = 0
    for index, image in enumerate(payload.images):
        extension = "png" if image.content_type == "image/png" else "jpg"
        name = f"{row.job_public_id}-{index + 1}.{extension}"
        if len(fetched) < MAX_FILES and total + image.bytes <= limit:
            fetched.append((name, image.key))
            total += image.bytes
        else:
            linked.append(image.key)
    # All at once: a batch of four waited on four downloads one after another.
    datas = await asyncio.gather(*(read(key) for _, key in fetched))
    attached = [(name, data) for (name, _), data in zip(fetched, datas, strict=True)]
    links = [services.storage.url(key) for key in linked]  # signed here: no request
    if row.routing.visibility == "spoiler":
        attached = [(SPOILER + name, data) for name, data in attached]
    attached, screened = await screen(row, attached, services, client)
    workflow = services.catalog.workflows.get(payload.workflow_name)
    title = workflow.manifest.title if workflow else payload.workflow_name
    if workflow is not None and workflow.manifest.family is None:  # reads the database
        offered = await asyncio.to_thread(offered_actions, row.job_public_id, payload, services)
    else:
        offered = offered_actions(row.job_public_id, payload, services)
    view = result_view(row.job_public_id, len(payload.images), offered)
    text = messages.result(
        row.job_public_id,
        title,
        payload.params,
        links,
        cancel_too_late=payload.cancel_too_late,
        reused_from=payload.reused_from,
    )
    return Outgoing("\n".join([text, *screened]), attached, view)


def offered_actions(public_id: str, payload: ResultPayload, services: Services) -> set[Action]:
    """The buttons a result gets: follow-ups some workflow does for its family (Vary
    Region only with the web editor's links set up), Reroll and Remix where its
    workflow takes a prompt, Enhance where prompt help is on too."""
    catalog = services.catalog
    workflow = catalog.workflows.get(payload.workflow_name)
    if workflow is None:
        return set()
    prefix = services.settings.storage.s3_prefix
    preferred = services.settings.bot.preferred_workflows()
    family = workflow.manifest.family
    if family is None:  # an upscale: the family of what it enlarged (database reads)
        job = services.queue.get(public_id)
        family = family_of(job, catalog, services.queue.get, prefix) if job else None
    offered: set[Action] = set()
    for action, follow_up in FOLLOW_UPS.items():
        try:
            workflow_for(catalog, PURPOSE[follow_up], family, preferred)
        except NotOffered:
            continue
        offered.add(action)
    if services.settings.api.edit_link_secret is None:  # the web editor's links are off
        offered.discard(Action.VARY_REGION)
    prompted = "prompt" in workflow.manifest.parameters
    if workflow.manifest.purpose is Purpose.UPSCALE:
        offered -= {Action.UPSCALE, Action.CREATIVE_UPSCALE}  # not larger again
    if prompted:
        offered |= {Action.REROLL, Action.REMIX}
        if services.settings.prompt_help.url:
            offered.add(Action.ENHANCE)
    return offered


def _upload_limit(client: discord.Client, guild_id: int | None) -> int:
    guild = client.get_guild(guild_id) if guild_id else None
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
