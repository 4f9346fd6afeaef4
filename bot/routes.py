"""How an answer reaches Discord so that sending it again never shows it twice.

While the request's interaction token lives (`STILLHOUSE_BOT__TOKEN_LIFETIME_S`, under
Discord's 15 minutes) the answer replaces the request's own message: an edit of the
interaction's original response. Discord applies an edit as a whole, so a sender killed
after Discord took it and before the row says `sent` leaves the row to be sent again,
and the second edit shows the same one message. Progress edits of that message take a
fence first (stillhouse.queue.fences): the answer waits for one in flight, and none can
start once the job has ended.

When the token is gone (or the original message is: deleted, or never made because the
process answering the request died), the answer goes to the channel with a mention and a
nonce made from the request id, with `enforce_nonce`: Discord answers a repeat within its
nonce window (a few minutes) with the first message. A row sent before (`attempts > 1`)
first looks for its earlier message in the channel's recent history: the bot's message
naming the request, without a Cancel button.

A private answer (`/serve private:True`) goes by the interaction only: its queued message
is ephemeral and so is the edit that replaces it; once the token is gone the row ends
undelivered rather than posting to the channel (the images stay in /history).

What remains: a repeat beyond the nonce window, in a channel whose history the bot may
not read (or where more than HISTORY_LOOKBACK messages came between the row's making and
its earlier message), posts a second message.
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import timedelta
from typing import Any

import discord

from bot import messages
from bot.limiter import GlobalLimiter
from bot.outgoing import Outgoing
from bot.views import Action, custom_id
from stillhouse.errors import StillhouseError
from stillhouse.queue.records import DeliveryRecord
from stillhouse.services import Services

log = logging.getLogger(__name__)
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
INVALID_WEBHOOK_TOKEN = 50027
GONE = {UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, INVALID_WEBHOOK_TOKEN}
# Discord's 3 s to acknowledge, and a margin: before then a missing original response
# may only be one the answering process has not made yet.
ANSWER_WINDOW_S = 5.0
FENCE_POLL_S = 0.05
# Messages read after the row was made, oldest first: a busy channel (13 a second in the
# soak) holds hundreds before a backlogged first try's message; 10 pages at most.
HISTORY_LOOKBACK = 1000


class Undeliverable(StillhouseError):
    """Nothing can carry this row to its user."""


class RetrySoon(StillhouseError):
    """The request's own message does not exist yet: it is being answered right now."""


class Routes:
    """Sends a rendered answer by the route that cannot show it twice."""

    def __init__(self, client: discord.Client, services: Services, limiter: GlobalLimiter) -> None:
        self._client = client
        self._s = services
        self._limiter = limiter

    async def send(self, row: DeliveryRecord, outgoing: Outgoing, *, fenced: bool = True) -> int:
        """Deliver; the id of the message that now shows the answer. `fenced=False`: the
        caller saw no progress edit in flight after the job ended (none can start then)."""
        routing = row.routing
        token, expires = routing.interaction_token, routing.interaction_expires_at
        now = self._s.clock()
        if token is not None and expires is not None and now < expires:
            try:
                if fenced:
                    await self._wait_for_fence(row)
                return await self._replace_original(token.get_secret_value(), outgoing)
            except discord.HTTPException as exc:
                if exc.code not in GONE and exc.status != 401:
                    raise
                lifetime = timedelta(seconds=self._s.settings.bot.token_lifetime_s)
                if now - (expires - lifetime) < timedelta(seconds=ANSWER_WINDOW_S):
                    raise RetrySoon("the request is still being answered") from exc
                log.info(
                    "the request's message is gone; using the channel",
                    extra={"action": "bot.route", "code": exc.code},
                )
        if routing.visibility == "private":
            # Only the interaction shows a private answer; the channel would show everyone.
            raise Undeliverable("a private answer's interaction has ended; /history shows it")
        return await self._to_channel(row, outgoing)

    async def _replace_original(self, token: str, outgoing: Outgoing) -> int:
        application_id = self._client.application_id
        assert application_id is not None, "a logged-in client knows its application"
        webhook = discord.Webhook.partial(application_id, token, client=self._client)
        # discord.py formats the id into the URL: "@original" is the route Discord offers.
        original: Any = "@original"
        message = await webhook.edit_message(
            original,
            content=outgoing.content,
            attachments=_files(outgoing),
            view=outgoing.view,  # None takes the Cancel button away
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return int(message.id)

    async def _wait_for_fence(self, row: DeliveryRecord) -> None:
        """Until no progress edit of the message can still land (a fence lapses by itself)."""
        while await asyncio.to_thread(self._s.fence.held_until, [row.job_id]):
            await asyncio.sleep(FENCE_POLL_S)

    async def _to_channel(self, row: DeliveryRecord, outgoing: Outgoing) -> int:
        routing = row.routing
        if routing.channel_id is None:
            raise Undeliverable("the request came from no channel and its token is gone")
        channel = self._client.get_partial_messageable(routing.channel_id)
        if row.attempts > 1:
            earlier = await self._earlier_answer(channel, row)
            if earlier is not None:
                log.info("found the answer sent before", extra={"action": "bot.deliver.found"})
                return earlier
        await self._limiter.acquire()
        sent = await channel.send(
            messages.with_mention(routing.user_id, outgoing.content),
            files=_files(outgoing),
            allowed_mentions=discord.AllowedMentions(
                everyone=False,
                roles=False,
                users=[discord.Object(routing.user_id)] if routing.user_id else False,
            ),
            view=discord.utils.MISSING if outgoing.view is None else outgoing.view,
            nonce=nonce_for(row.job_public_id),
        )
        return int(sent.id)

    async def _earlier_answer(
        self, channel: discord.PartialMessageable, row: DeliveryRecord
    ) -> int | None:
        """The bot's message already answering this request, if the channel shows one."""
        me = self._client.user
        since = discord.Object(discord.utils.time_snowflake(row.created_at - timedelta(seconds=5)))
        started = discord.utils.utcnow()
        try:
            async for message in channel.history(limit=HISTORY_LOOKBACK, after=since):
                if message.created_at > started:
                    break  # what an earlier try sent is older than this try
                if me is not None and message.author.id == me.id and answers(message, row):
                    return message.id
        except discord.HTTPException as exc:  # no Read Message History: cannot tell
            log.info("cannot read the channel: %s", exc, extra={"action": "bot.deliver.blind"})
        return None


def answers(message: discord.Message, row: DeliveryRecord) -> bool:
    """Whether a message of ours is this request's answer (not its queued message)."""
    if f"`{row.job_public_id}`" not in message.content:
        return False
    cancel = custom_id(Action.CANCEL, row.job_public_id)
    return not any(
        getattr(child, "custom_id", None) == cancel
        for row_ in message.components
        for child in getattr(row_, "children", [row_])
    )


def nonce_for(public_id: str) -> str:
    """The request's nonce (Discord allows 25 characters; a public id has 16)."""
    return f"sh-{public_id}"


def _files(outgoing: Outgoing) -> list[discord.File]:
    return [discord.File(io.BytesIO(data), filename=name) for name, data in outgoing.images]
