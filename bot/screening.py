"""Generated images, screened before they are shown outside an age-restricted channel
(stillhouse.safety): a flagged image goes as a spoiler or is withheld, and an image the
check could not look at is sent or withheld, as the server's managers chose."""

from __future__ import annotations

import asyncio
import logging

import discord

from stillhouse.queue.records import DeliveryRecord
from stillhouse.safety import ImageCheckUnavailable
from stillhouse.services import Services

log = logging.getLogger(__name__)
SPOILER = "SPOILER_"  # Discord blurs an attachment whose name starts with it


async def screen(
    row: DeliveryRecord,
    images: list[tuple[str, bytes]],
    services: Services,
    client: discord.Client,
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The images as they may be shown where the row goes, and sentences saying what was
    held back. A channel this process does not know counts as not age-restricted."""
    check = services.image_check
    if not check.active or not images or _age_restricted(client, row.routing.channel_id):
        return images, []
    own = await asyncio.to_thread(services.guilds.get, row.routing.guild_id)
    shown: list[tuple[str, bytes]] = []
    flagged = unchecked = 0
    for name, data in images:
        kind = "image/png" if name.endswith(".png") else "image/jpeg"
        try:
            verdict = await asyncio.to_thread(check.check, data, kind)
        except ImageCheckUnavailable as exc:
            log.warning(
                "image not checked: %s",
                exc,
                extra={"action": "safety.unavailable", "policy": own.unchecked_images},
            )
            if own.unchecked_images == "withhold":
                unchecked += 1
            else:
                shown.append((name, data))
            continue
        if not verdict.flagged:
            shown.append((name, data))
            continue
        log.info(
            "image flagged",
            extra={
                "action": "safety.flagged",
                "score": verdict.score,
                "policy": own.flagged_images,
            },
        )
        if own.flagged_images == "spoiler":
            shown.append((name if name.startswith(SPOILER) else SPOILER + name, data))
        else:
            flagged += 1
    return shown, _notes(flagged, unchecked)


def _notes(flagged: int, unchecked: int) -> list[str]:
    notes = []
    if flagged:
        notes.append(
            f"{_images(flagged)} withheld: the image check flagged {_them(flagged)}, and this "
            "channel is not age-restricted."
        )
    if unchecked:
        notes.append(
            f"{_images(unchecked)} withheld: the image check is not answering, and this "
            "server shows only checked images outside age-restricted channels. /history "
            "shows them to you alone."
        )
    return notes


def _images(count: int) -> str:
    return "1 image" if count == 1 else f"{count} images"


def _them(count: int) -> str:
    return "it" if count == 1 else "them"


def _age_restricted(client: discord.Client, channel_id: int | None) -> bool:
    channel = client.get_channel(channel_id) if channel_id else None
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False
