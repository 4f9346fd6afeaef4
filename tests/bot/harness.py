"""A real StillhouseBot against the Discord emulator, in a thread of the test, plus the
stand-ins for what happens between /serve and the send queue (the master's writes)."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from PIL import Image

from bot.client import StillhouseBot
from stillhouse.errors import ObjectNotFound
from stillhouse.ids import new_owner
from stillhouse.queue.records import JobRecord
from stillhouse.queue.timing import utcnow
from stillhouse.schemas.jobs import JobResult
from stillhouse.schemas.worker_io import ImageRef
from stillhouse.services import Services
from stillhouse.storage import Storage
from stillhouse.storage.base import new_key
from tests.doubles.discord import ClientThread, DiscordEmulator, GuildSpec, Interaction, Message
from tests.support import wait_until

# (id >> 22) is even for GUILD and odd for OTHER_GUILD: shards 0 and 1 of 2.
GUILD = (1_300_000_000_000_000_000 >> 23) << 23
OTHER_GUILD = GUILD + (1 << 22)
CHANNEL, OTHER_CHANNEL, HIDDEN_CHANNEL, SECOND_CHANNEL = (
    1_300_000_000_000_000_101,
    1_300_000_000_000_000_102,
    1_300_000_000_000_000_103,
    1_300_000_000_000_000_104,
)
USER, OTHER_USER, MANAGER = (
    1_300_000_000_000_000_201,
    1_300_000_000_000_000_202,
    1_300_000_000_000_000_203,
)
# OTHER_MANAGER manages OTHER_GUILD only; OPERATOR runs the bot (STILLHOUSE_BOT__ADMIN_IDS)
# and manages no guild.
OTHER_MANAGER, OPERATOR = 1_300_000_000_000_000_204, 1_300_000_000_000_000_205


PUBLIC_ID = re.compile(r"`([A-Za-z0-9_-]{16})`")


def guilds() -> list[GuildSpec]:
    """Two guilds on different shards of two; the first has a channel the bot cannot see
    and a second one it can."""
    return [
        GuildSpec(
            id=GUILD,
            name="Main",
            channel_ids=[CHANNEL, HIDDEN_CHANNEL, SECOND_CHANNEL],
            member_ids=[USER, OTHER_USER, OPERATOR],
            admin_ids={MANAGER},
            no_access_channel_ids=[HIDDEN_CHANNEL],
        ),
        GuildSpec(
            id=OTHER_GUILD,
            name="Other",
            channel_ids=[OTHER_CHANNEL],
            member_ids=[USER, OPERATOR],
            admin_ids={OTHER_MANAGER},
        ),
    ]


class FastBot(StillhouseBot):
    """discord.py waits 5 s between shards' IDENTIFYs; a test needs no such pause."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


@contextlib.contextmanager
def running_bot(services: Services, emu: DiscordEmulator, **options: Any) -> Iterator[FastBot]:
    """A bot (all shards, unless told), connected and synced, stopped on exit."""
    bot = FastBot(services, guild_ready_timeout=0.05, **options)
    thread = ClientThread(bot, emu.token).start(timeout_s=10)
    try:
        yield bot
    finally:
        thread.stop()


def png(width: int = 64, height: int = 48, color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_result(
    storage: Storage, public_id: str, images: int = 1, colors: Sequence[str] = ()
) -> tuple[JobResult, list[tuple[str, bytes]]]:
    """What a worker leaves behind: PNGs in storage (of `colors`, when given), and the
    result pointing at them."""
    stored, refs = [], []
    colors = colors or [("teal", "orange", "navy", "olive")[n % 4] for n in range(images)]
    for color in colors:
        data = png(color=color)
        key = new_key("stillhouse/", public_id, "png")
        obj = storage.put(key, data, "image/png")
        stored.append((key, data))
        refs.append(
            ImageRef(
                key=key,
                bucket=obj.bucket,
                content_type="image/png",
                width=64,
                height=48,
                bytes=len(data),
                sha256=obj.sha256,
                node_id="9",
            )
        )
    return JobResult(images=refs), stored


def finish(
    services: Services, public_id: str, images: int = 1, colors: Sequence[str] = ()
) -> list[tuple[str, bytes]]:
    """What a master does when the GPU is done: store the images, complete the job (which
    writes its result row). Returns (key, bytes) per image."""
    queue = services.queue
    owner = new_owner("test-master")
    claimed = wait_until(lambda: [j for j in queue.claim(owner, 50) if j.public_id == public_id])
    job: JobRecord = claimed[0]
    result, stored = stored_result(services.storage, public_id, images, colors)
    queue.complete(job, result)
    return stored


def queued_id(ix: Interaction) -> str:
    """The job id in a `Queued `<id>`` answer. A bot that could not answer within its
    acknowledgement budget defers first and edits the acceptance in afterwards; by then
    the message may already carry the result, which names the job too."""
    data = ix.wait_response().get("data") or {}
    content = data.get("content")
    if content is None:
        content = wait_until(
            lambda: ix.original and ix.original.content, 10, what="the deferred acceptance"
        )
    match = re.search(r"`([A-Za-z0-9_-]{16})`", str(content))
    assert match, content
    return match.group(1)


def buttons(message: Message) -> list[str]:
    """Every button's custom id on a message."""
    return [c["custom_id"] for row in message.components for c in row["components"]]


def is_answer(message: Message, public_id: str) -> bool:
    """A visible message of the bot that answers the request: it names the request and
    has no Cancel button (the queued message has one until the answer replaces it)."""
    return (
        not message.deleted
        and not message.ephemeral
        and f"`{public_id}`" in message.content
        and f"sh:x:{public_id}" not in buttons(message)
    )


def answers(emu: DiscordEmulator, ix: Interaction, public_id: str) -> list[Message]:
    """Every visible answer to a request: its own message replaced by the answer, its
    follow-ups, and channel posts naming it."""
    seen: dict[int, Message] = {}
    for message in [ix.original, *ix.followups, *emu.channel_messages(ix.channel_id)]:
        if message is not None and is_answer(message, public_id):
            seen[message.id] = message
    return list(seen.values())


def answer_index(emu: DiscordEmulator) -> dict[str, list[Message]]:
    """Every visible answer in the emulator, by the request id it names: one pass over
    all messages, for runs of thousands of requests."""
    index: dict[str, list[Message]] = {}
    with emu.state.lock:
        messages = list(emu.state.messages.values())
    for message in messages:
        for public_id in set(PUBLIC_ID.findall(message.content)):
            if is_answer(message, public_id):
                index.setdefault(public_id, []).append(message)
    return index


def answered_at(message: Message) -> float | None:
    """When the message first showed images (the emulator's clock)."""
    return next((r.at for r in message.revisions if r.attachment_names), None)


def wait_answer(
    emu: DiscordEmulator, ix: Interaction, public_id: str, timeout_s: float = 10
) -> Message:
    """The one answer to a request, once it is there."""
    found = wait_until(
        lambda: answers(emu, ix, public_id), timeout_s, what=f"the answer to {public_id}"
    )
    assert len(found) == 1, f"{public_id} answered {len(found)} times"
    return found[0]


def shift_clock(services: Services, by: timedelta) -> None:
    """The bot's clock, moved (token lifetimes)."""
    services.clock = lambda: utcnow() + by


def image_gone(services: Services, key: str) -> bool:
    """Whether storage no longer has the object."""
    try:
        services.storage.get(key)
    except ObjectNotFound:
        return True
    return False
